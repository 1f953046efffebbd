"""Performance figures for `nox -s bench` (printed, never asserted).

- wall time of `segur-bench demo` (reference vendor + full INS profile + reports);
- CLI start-up time (`segur-bench --help`), best of several runs;
- offline INS validation throughput (FR Core Patient resources per second, in-process);
- report rendering of a synthetic 1,000-requirement run with evidence (HTML, Markdown, JUnit; target < 2 s),
  and signing + verifying it.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
EXE = str(Path(sys.executable).parent / "segur-bench")


def timed(cmd: list[str], **kw: object) -> tuple[float, int]:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, **kw)  # type: ignore[call-overload]
    return time.perf_counter() - t0, proc.returncode


def bench_help(n: int = 7) -> None:
    times = sorted(timed([EXE, "--help"])[0] for _ in range(n))
    print(f"cli --help start-up: best {times[0]:.3f} s, median {times[n // 2]:.3f} s (n={n})")


def bench_demo() -> None:
    out = Path(tempfile.mkdtemp(prefix="sb-bench-demo-"))
    try:
        secs, code = timed([EXE, "demo", "--out", str(out), "--no-db"])  # never into $HOME
        print(f"demo wall time: {secs:.2f} s (exit {code})")
    finally:
        shutil.rmtree(out, ignore_errors=True)


def _patient() -> dict:
    return {
        "resourceType": "Patient",
        "id": "bench",
        "extension": [
            {
                "url": "http://hl7.org/fhir/StructureDefinition/patient-birthPlace",
                "valueAddress": {
                    "extension": [
                        {
                            "url": "https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-address-insee-code",
                            "valueCoding": {
                                "system": "https://mos.esante.gouv.fr/NOS/TRE_R13-CommuneOM/FHIR/TRE-R13-CommuneOM",
                                "code": "63220",
                            },
                        }
                    ]
                },
            },
            {
                "url": "https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-identity-reliability",
                "extension": [
                    {
                        "url": "identityStatus",
                        "valueCoding": {
                            "system": "https://hl7.fr/ig/fhir/core/CodeSystem/fr-core-cs-identity-status",
                            "code": "QUAL",
                        },
                    }
                ],
            },
        ],
        "identifier": [
            {
                "use": "official",
                "system": "urn:oid:1.2.250.1.213.1.4.8",
                "value": "109076322083489",
                "type": {
                    "coding": [
                        {"system": "https://hl7.fr/ig/fhir/core/CodeSystem/fr-core-cs-v2-0203", "code": "INS-NIR"}
                    ]
                },
            }
        ],
        "name": [
            {
                "use": "official",
                "family": "ECETINSI",
                "given": ["PIERRE-ALAIN", "MURIEL", "FLORIANT"],
                "extension": [
                    {
                        "url": "https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-patient-birth-list-given-name",
                        "valueString": "PIERRE-ALAIN MURIEL FLORIANT",
                    }
                ],
            }
        ],
        "gender": "male",
        "birthDate": "2009-07-14",
    }


def bench_validation(seconds: float = 3.0) -> None:
    import conformance.checks  # noqa: F401
    from conformance.checks.registry import run_check

    pats = [_patient()]
    if SHARED.exists():
        for f in sorted((SHARED / "fhir" / "examples").glob("*Patient*.json")):
            pats.append(json.loads(f.read_text(encoding="utf-8")))
    pool = [copy.deepcopy(p) for p in pats]
    n = 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for p in pool:
            run_check("ins.patient", p)
            n += 1
    secs = time.perf_counter() - t0
    print(f"offline INS validation: {n / secs:,.0f} Patient resources/s (1 core, {len(pool)} distinct resources)")

    # Same through the CLI on files (includes process start and JSON parsing, all cores).
    tmp = Path(tempfile.mkdtemp(prefix="sb-bench-val-"))
    try:
        for i in range(400):
            (tmp / f"p{i}.json").write_text(json.dumps(pool[i % len(pool)]), encoding="utf-8")
        secs, code = timed([EXE, "validate", str(tmp), "--format", "json"])
        print(
            f"validate CLI: 400 Patient files in {secs:.2f} s = {400 / secs:,.0f} files/s "
            f"({os.cpu_count()} cores, exit {code})"
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def bench_render() -> None:
    sys.path.insert(0, str(ROOT))
    from conformance.engine.evidence import evidence_hash
    from conformance.model import Evidence
    from conformance.report.render import render_html, render_junit, render_markdown
    from conformance.trust.signing import generate_key, sign_results, verify_results
    from tests.test_report import synthetic_run

    data = synthetic_run(1000)
    render_html(data)  # warm the template cache: the CLI renders once per process, but compiles once too
    t0 = time.perf_counter()
    html = render_html(data)
    t1 = time.perf_counter()
    render_markdown(data)
    t2 = time.perf_counter()
    render_junit(data)
    t3 = time.perf_counter()
    print(
        f"render 1,000 requirements + 1,000 evidence: html {t1 - t0:.3f} s ({len(html) / 1e6:.1f} MB), "
        f"md {t2 - t1:.3f} s, junit {t3 - t2:.3f} s, total {t3 - t0:.3f} s (target < 2 s)"
    )
    for ev in data["evidence"]:
        ev["sha256"] = evidence_hash(Evidence.model_validate(ev))
    key = generate_key()
    t0 = time.perf_counter()
    data["signature"] = sign_results(data, key)
    t1 = time.perf_counter()
    ok = verify_results(data, public_key=key.public_key()).ok
    t2 = time.perf_counter()
    print(
        f"sign 1,000-requirement run: {t1 - t0:.3f} s; verify (1,000 evidence hashes + signature): {t2 - t1:.3f} s "
        f"({'ok' if ok else 'FAILED'})"
    )


def main() -> None:
    print(f"segur-bench benchmarks — python {sys.version.split()[0]}, {os.cpu_count()} cores")
    bench_help()
    bench_validation()
    bench_render()
    bench_demo()
    extra = ROOT / "benchmarks" / "extra.py"
    if extra.exists():
        subprocess.run([sys.executable, str(extra)], check=False)


if __name__ == "__main__":
    main()
