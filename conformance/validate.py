"""Offline validation of files (``segur-bench validate``): FHIR Patient JSON and CDA R2 documents.

Each file gets a verdict of its own: a file that cannot be read as what it should be is ``error``
with an ``INPUT.*`` finding, never an exception, so one hostile file in a batch does not cost the
others their verdicts.  Large batches are spread over processes using all cores (checks are pure and
CPU-bound); each worker loads the value sets and the ANS pack once (per-process caches).

CDA documents get the CI-SIS header rules (``cda.header``, ``CDA.*``) and the INS rules on the
patient (``ins.cda``, ``INS.*``); with ``ans_pack`` also ANS's own XSD and volet schematron
(``ANS.*``).  The file size is checked before anything is read, and the whole file is never read
when it is over the limit.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

from conformance.model import VALIDATION_SCHEMA_ID, Finding

MAX_FILE_BYTES = 50 * 1024 * 1024
KINDS = ("auto", "cda", "fhir", "xds", "mhd")
HL7 = "urn:hl7-org:v3"


def _status(findings: list[Finding]) -> str:
    if any(f.rule.startswith("INPUT.") and f.severity == "error" for f in findings):
        return "error"
    return "failed" if any(f.severity == "error" for f in findings) else "passed"


def _read(path: Path) -> bytes:
    """The file's bytes, refusing (before reading) anything over :data:`MAX_FILE_BYTES`."""
    from conformance.parsing import InputError

    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise InputError("INPUT.TOO-LARGE", f"file of {size} bytes exceeds the {MAX_FILE_BYTES}-byte limit")
    with path.open("rb") as fh:
        data = fh.read(MAX_FILE_BYTES + 1)  # the file may grow between stat() and read()
    if len(data) > MAX_FILE_BYTES:
        raise InputError("INPUT.TOO-LARGE", f"file exceeds the {MAX_FILE_BYTES}-byte limit")
    return data


def _head_text(data: bytes, size: int = 4096) -> str:
    """The start of the file as text whatever its encoding (UTF-16 with BOM included), never raising."""
    head = data[:size]
    if head.startswith(b"\xff\xfe"):
        return head[2:].decode("utf-16-le", errors="ignore")
    if head.startswith(b"\xfe\xff"):
        return head[2:].decode("utf-16-be", errors="ignore")
    if len(head) > 1 and head[0] == 0 and head[1] != 0:  # UTF-16 BE without BOM ('<' = 00 3C)
        return head.decode("utf-16-be", errors="ignore")
    if len(head) > 1 and head[1] == 0 and head[0] != 0:  # UTF-16 LE without BOM
        return head.decode("utf-16-le", errors="ignore")
    return head.decode("utf-8", errors="ignore")


def detect_kind(data: bytes) -> str:
    text = _head_text(data, 2048).lstrip("\ufeff \t\r\n")
    if text.startswith(("{", "[")):
        return "fhir"
    if text.startswith("<"):
        head = _head_text(data, 8192)
        if "SubmitObjectsRequest" in head or "ProvideAndRegisterDocumentSetRequest" in head:
            return "xds"
        return "cda"
    return "unknown"


def _refuse_dtd(data: bytes) -> None:
    """DOCTYPE/ENTITY probe that copes with any encoding (the parser also refuses them, this is defence in depth)."""
    from conformance.parsing import InputError

    probe = _head_text(data, 8192).upper()
    if "<!DOCTYPE" in probe or "<!ENTITY" in probe:
        raise InputError("INPUT.DTD", "DOCTYPE/ENTITY declarations are refused (XXE and entity-expansion risk)")


def _is_mhd_bundle(doc: dict[str, Any]) -> bool:
    if doc.get("resourceType") != "Bundle":
        return False
    raw = doc.get("entry")
    entries: list[Any] = raw if isinstance(raw, list) else []
    types = {(e.get("resource") or {}).get("resourceType") for e in entries if isinstance(e, dict)}
    return "DocumentReference" in types and doc.get("type") == "transaction"


def _validate_mhd(doc: dict[str, Any]) -> list[Finding]:
    """ITI-65 provide bundle: PDSm/DMP metadata rules, and consistency with the CDA in its Binary."""
    from conformance.checks.registry import run_check

    findings = run_check("mhd.bundle", doc)
    for f in run_check("mhd.cda", doc):
        if f.rule.startswith("INPUT."):
            # The Binary is not a readable CDA (e.g. a PDF): nothing to compare, the bundle itself was read.
            f = Finding(f.rule, "info", f"CDA consistency not checked: {f.message}", f.location)
        findings.append(f)
    return findings


def _validate_xds(data: bytes) -> list[Finding]:
    """ITI-41 submission (SOAP envelope, ProvideAndRegister or SubmitObjectsRequest): metadata rules and,
    when the document travels inline, consistency with that CDA."""
    from conformance.checks.registry import run_check
    from conformance.checks.xds import parse_submission
    from conformance.parsing import InputError, parse_xml

    _refuse_dtd(data)
    sub = parse_submission(parse_xml(data, max_bytes=MAX_FILE_BYTES))
    findings = run_check("xds.metadata", sub)
    for de in sub.documents:
        content = getattr(de, "content", None)
        if not content:
            continue
        try:
            root = cda_root(content)
        except InputError:
            continue
        findings.extend(run_check("xds.cda", sub, cda_root=root, document=content, entry=de.id))
    return findings


def _validate_fhir(data: bytes) -> tuple[str, list[Finding]]:
    from conformance.checks.fhir import patients_in
    from conformance.checks.registry import run_check
    from conformance.parsing import parse_json

    doc = parse_json(data, max_bytes=MAX_FILE_BYTES)
    if not isinstance(doc, dict) or "resourceType" not in doc:
        return "fhir", [Finding("INPUT.JSON", "error", "not a FHIR resource (no resourceType)", "$")]
    if _is_mhd_bundle(doc):
        return "mhd", _validate_mhd(doc)
    return "fhir", _validate_patients(doc, patients_in, run_check)


def _validate_patients(doc: dict[str, Any], patients_in: Any, run_check: Any) -> list[Finding]:
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

    _refuse_dtd(data)
    root = parse_xml(data, max_bytes=MAX_FILE_BYTES)
    if root.tag == f"{{{HL7}}}ClinicalDocument":
        return root
    embedded = root.find(f".//{{{HL7}}}ClinicalDocument")
    if embedded is not None:
        return embedded
    raise InputError("INPUT.KIND", f"not a CDA document (root element {root.tag})")


def _validate_cda(data: bytes, terminology: tuple[str, ...] = (), ans_pack: str | None = None) -> list[Finding]:
    from conformance.checks.registry import run_check
    from conformance.terminology import load_cached

    root = cda_root(data)
    term = load_cached(terminology)
    findings = run_check("cda.header", root, terminology=term)
    findings.extend(run_check("ins.cda", root))
    if ans_pack is not None:
        from conformance.checks.anspack import pack_findings

        findings.extend(pack_findings(root, Path(ans_pack)))
    return findings


def validate_file(
    path_str: str, kind: str = "auto", terminology: tuple[str, ...] = (), ans_pack: str | None = None
) -> dict[str, Any]:
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
        if used in ("fhir", "mhd"):
            used, findings = _validate_fhir(data)
        elif used == "xds":
            findings = _validate_xds(data)
        elif used == "cda":
            findings = _validate_cda(data, terminology, ans_pack)
        elif not data.strip():
            findings = [Finding("INPUT.EMPTY", "error", "empty file", None)]
        else:
            findings = [Finding("INPUT.KIND", "error", "neither JSON (FHIR) nor XML (CDA)", None)]
    except InputError as exc:
        findings = [Finding(exc.rule, "error", exc.message, None)]
    except (OSError, MemoryError, RecursionError) as exc:
        findings = [Finding("INPUT.READ", "error", f"cannot read file: {type(exc).__name__}: {exc}", None)]
    except (ValueError, UnicodeError) as exc:  # e.g. an undecodable byte sequence the parser let through
        findings = [Finding("INPUT.XML", "error", f"unreadable document: {type(exc).__name__}: {exc}", None)]
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


def validate_paths(
    paths: list[Path],
    kind: str = "auto",
    *,
    jobs: int | None = None,
    terminology: Sequence[Path | str] = (),
    ans_pack: Path | str | None = None,
) -> dict[str, Any]:
    """Validate files and folders; batches of 8 files or more run in a process pool over all cores."""
    files = [str(p) for p in expand(paths)]
    jobs = jobs or os.cpu_count() or 1
    term = tuple(str(Path(t).resolve()) for t in terminology)
    pack = str(Path(ans_pack).resolve()) if ans_pack is not None else None
    run = partial(validate_file, kind=kind, terminology=term, ans_pack=pack)
    if len(files) >= 8 and jobs > 1:
        with ProcessPoolExecutor(max_workers=min(jobs, len(files))) as pool:
            chunk = max(1, min(4, len(files) // (jobs * 2)))
            entries = list(pool.map(run, files, chunksize=chunk))
    else:
        entries = [run(f) for f in files]
    summary: dict[str, Any] = {s: sum(1 for e in entries if e["status"] == s) for s in ("passed", "failed", "error")}
    summary["files"] = len(entries)
    summary["findings"] = {
        sev: sum(1 for e in entries for f in e["findings"] if f["severity"] == sev)
        for sev in ("error", "warning", "info")
    }
    return {"schema": VALIDATION_SCHEMA_ID, "files": entries, "summary": summary}
