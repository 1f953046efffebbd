"""CDA validation throughput: built-in rules (all cores and one core) vs ANS's official schematrons.

Run: ``python benchmarks/cda.py [EXAMPLES_DIR] [--pack ANS_PACK_DIR]`` (defaults: ../shared/data).
The schematrons need the ``schematron`` extra (saxonche); they are compiled once into a temporary cache
(compile time reported separately), then run on the same documents as the built-in rules.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(ROOT))


def _rate(n: int, seconds: float) -> str:
    return f"{n / seconds:8.1f} docs/s ({seconds * 1000:7.1f} ms for {n} docs)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("examples", nargs="?", type=Path, default=SHARED / "cda" / "examples")
    parser.add_argument("--pack", type=Path, default=SHARED / "cda" / "ans-pack")
    parser.add_argument("--rounds", type=int, default=5, help="repeat the document set (steadier figures)")
    args = parser.parse_args(argv)
    if not args.examples.is_dir():
        print(f"cda: {args.examples} absent, benchmark skipped")
        return 0

    from conformance.validate import cda_root, validate_file, validate_paths

    files = sorted(args.examples.glob("*.xml")) * args.rounds
    n = len(files)
    cores = os.cpu_count() or 1
    terminology = [args.pack / "jeuxDeValeurs", SHARED / "nos"]
    term = tuple(str(t) for t in terminology if t.is_dir())

    validate_file(str(files[0]), terminology=term)  # warm the per-process caches (value sets)
    t = time.perf_counter()
    for f in files:
        validate_file(str(f), terminology=term)
    single = time.perf_counter() - t
    t = time.perf_counter()
    report = validate_paths(files, jobs=cores, terminology=term)
    multi = time.perf_counter() - t
    print(f"CDA built-in rules (cda.header + ins.cda, {len(set(files))} official examples × {args.rounds})")
    print(f"  1 core      : {_rate(n, single)}")
    print(f"  {cores} cores     : {_rate(n, multi)}  (validate_paths, process pool, start-up included)")
    print(f"  verdicts    : {report['summary']['passed']} passed, {report['summary']['failed']} failed")

    from conformance.checks import anspack

    if not anspack.saxon_available() or not args.pack.is_dir():
        print("  official schematrons: skipped (saxonche or the ANS pack absent)")
        return 0
    with tempfile.TemporaryDirectory() as cache:
        os.environ["SEGUR_BENCH_CACHE"] = cache
        docs = [(f, cda_root(f.read_bytes())) for f in sorted(args.examples.glob("*.xml"))]
        chosen = {f: anspack.choose_schematron(d, args.pack) for f, d in docs}
        t = time.perf_counter()
        broken: set[Path] = set()
        for sch in sorted(set(chosen.values())):
            try:
                anspack._executable(str(sch.resolve()))
            except anspack.PackError:
                broken.add(sch)
        compile_s = time.perf_counter() - t
        runnable = [(f, d) for f, d in docs if chosen[f] not in broken] * args.rounds
        t = time.perf_counter()
        for f, d in runnable:
            anspack.run_schematron(d, chosen[f])
        sch_s = time.perf_counter() - t
        t = time.perf_counter()
        for f, _ in runnable:
            validate_file(str(f), terminology=term)
        builtin_same = time.perf_counter() - t
    n_sch = len(runnable)
    print(
        f"Official ANS schematrons via saxonche ({len(set(chosen.values()))} schematrons, {len(broken)} not compilable)"
    )
    print(f"  compile     : {compile_s:.2f} s once (then cached on disk)")
    print(f"  1 core      : {_rate(n_sch, sch_s)}")
    print(f"  built-in, same documents, 1 core: {_rate(n_sch, builtin_same)}")
    print(
        f"  ratio       : built-in rules are {sch_s / builtin_same:.1f}× faster than the official schematrons (1 core)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
