"""Offline validation of files (``segur-bench validate``): FHIR Patient JSON and CDA R2 documents.

Each file gets a verdict of its own: a file that cannot be read as what it should be is ``error``
with an ``INPUT.*`` finding, never an exception, so one hostile file in a batch does not cost the
others their verdicts.  Large batches are spread over processes (checks are pure and CPU-bound).
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from conformance.model import VALIDATION_SCHEMA_ID, Finding

MAX_FILE_BYTES = 50 * 1024 * 1024
KINDS = ("auto", "cda", "fhir")
HL7 = "urn:hl7-org:v3"


def _status(findings: list[Finding]) -> str:
    if any(f.rule.startswith("INPUT.") and f.severity == "error" for f in findings):
        return "error"
    return "failed" if any(f.severity == "error" for f in findings) else "passed"


def _read(path: Path) -> bytes:
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        from conformance.parsing import InputError

        raise InputError("INPUT.TOO-LARGE", f"file of {size} bytes exceeds the {MAX_FILE_BYTES}-byte limit")
    return path.read_bytes()


def detect_kind(data: bytes) -> str:
    head = data[:2048]
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        head = head.decode("utf-16", errors="ignore").encode("utf-8")
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if text.startswith((b"{", b"[")):
        return "fhir"
    if text.startswith(b"<"):
        return "cda"
    return "unknown"


def _validate_fhir(data: bytes) -> list[Finding]:
    from conformance.checks.fhir import patients_in
    from conformance.checks.registry import run_check
    from conformance.parsing import parse_json

    doc = parse_json(data, max_bytes=MAX_FILE_BYTES)
    if not isinstance(doc, dict) or "resourceType" not in doc:
        return [Finding("INPUT.JSON", "error", "not a FHIR resource (no resourceType)", "$")]
    found = patients_in(doc)
    if not found:
        return [
            Finding(
                "FHIR.RESOURCE-TYPE",
                "info",
                f"{doc['resourceType']}: no Patient, INS rules not applicable",
                doc["resourceType"],
            )
        ]
    out: list[Finding] = []
    for loc, res in found:
        out.extend(run_check("ins.patient", res, location=loc))
    return out


def cda_root(data: bytes) -> Any:
    """The ClinicalDocument element, also when embedded in an auto-présentable xsl:stylesheet."""
    from conformance.parsing import InputError, parse_xml

    root = parse_xml(data, max_bytes=MAX_FILE_BYTES)
    if root.tag == f"{{{HL7}}}ClinicalDocument":
        return root
    embedded = root.find(f".//{{{HL7}}}ClinicalDocument")
    if embedded is not None:
        return embedded
    raise InputError("INPUT.KIND", f"not a CDA document (root element {root.tag})")


def _validate_cda(data: bytes) -> list[Finding]:
    from conformance.checks.registry import run_check

    return run_check("ins.cda", cda_root(data))


def validate_file(path_str: str, kind: str = "auto") -> dict[str, Any]:
    """Validate one file; always returns its entry of the validation/v1 ``files`` list."""
    import conformance.checks  # noqa: F401  (fills the registry in worker processes)
    from conformance.parsing import InputError

    path = Path(path_str)
    findings: list[Finding]
    used = kind
    try:
        data = _read(path)
        if kind == "auto":
            used = detect_kind(data)
        if used == "fhir":
            findings = _validate_fhir(data)
        elif used == "cda":
            findings = _validate_cda(data)
        elif not data.strip():
            findings = [Finding("INPUT.EMPTY", "error", "empty file", None)]
        else:
            findings = [Finding("INPUT.KIND", "error", "neither JSON (FHIR) nor XML (CDA)", None)]
    except InputError as exc:
        findings = [Finding(exc.rule, "error", exc.message, None)]
    except (OSError, MemoryError, RecursionError) as exc:
        findings = [Finding("INPUT.READ", "error", f"cannot read file: {type(exc).__name__}: {exc}", None)]
    return {
        "path": path_str,
        "kind": used,
        "status": _status(findings),
        "findings": [f.as_dict() for f in findings],
    }


def expand(paths: list[Path]) -> list[Path]:
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            out.extend(sorted(q for q in p.rglob("*") if q.is_file() and q.suffix.lower() in (".json", ".xml")))
        else:
            out.append(p)
    return out


def validate_paths(paths: list[Path], kind: str = "auto", *, jobs: int | None = None) -> dict[str, Any]:
    files = [str(p) for p in expand(paths)]
    jobs = jobs or os.cpu_count() or 1
    if len(files) >= 8 and jobs > 1:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            entries = list(pool.map(validate_file, files, [kind] * len(files), chunksize=4))
    else:
        entries = [validate_file(f, kind) for f in files]
    summary: dict[str, Any] = {s: sum(1 for e in entries if e["status"] == s) for s in ("passed", "failed", "error")}
    summary["files"] = len(entries)
    summary["findings"] = {
        sev: sum(1 for e in entries for f in e["findings"] if f["severity"] == sev)
        for sev in ("error", "warning", "info")
    }
    return {"schema": VALIDATION_SCHEMA_ID, "files": entries, "summary": summary}
