"""Report renderers: results JSON matches its shipped schema, JUnit is parseable with the right counts,
HTML is self-contained, escapes vendor text, lets an auditor reach evidence, and says when a run was
interrupted; Markdown is safe to paste in a merge request."""

from __future__ import annotations

import json
import re
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from conformance.model import RESULTS_SCHEMA_ID, CheckOutcome, Evidence, Finding, RequirementResult, RunResult
from conformance.report import (
    render_html,
    render_json,
    render_junit,
    render_markdown,
    render_pdf,
    validate_results,
    write_reports,
)
from conformance.report.render import BODY_LIMIT, md_escape

SCHEMA = json.loads((Path(__file__).resolve().parents[1] / "conformance/schemas/results.schema.json").read_text())

HOSTILE = "<script>alert('pwned')</script>"
HOSTILE_IMG = '<img src="https://evil.example/x.png" onerror=alert(1)>'
SECRET = "s3cr3t-bearer-token"


def _evidence(eid: str, body: str = '{"resourceType": "Patient"}') -> Evidence:
    return Evidence(
        id=eid,
        name=f"fhir_read_{eid}",
        scenario="ins-fhir-read",
        direction="outgoing",
        protocol="http",
        started="2026-03-01T10:00:01Z",
        duration_ms=42.0,
        request={
            "method": "GET",
            "url": "https://vendor.test/fhir/Patient?identifier=urn:oid:1.2.250.1.213.1.4.8|123",
            "headers": {"Accept": "application/fhir+json", "Authorization": "Bearer [REDACTED]"},
        },
        response={"status": 200, "headers": [["Content-Type", "application/fhir+json"]], "body": body},
        tls={"version": "TLSv1.3", "cipher": "TLS_AES_128_GCM_SHA256"},
        curl="curl -H 'Accept: application/fhir+json' 'https://vendor.test/fhir/Patient'",
        sha256="0" * 64,
    )


def make_run(*, complete: bool = True) -> RunResult:
    """One requirement per status; the failed one carries findings and hostile vendor text."""
    hostile_ev = _evidence("ev-2", body=HOSTILE + HOSTILE_IMG + "\x00")
    big_ev = _evidence("ev-3", body="x" * (BODY_LIMIT + 5000))
    failed_findings = [
        Finding("INS.MATRICULE.KEY", "error", f"clé INS incorrecte {HOSTILE}", "Patient.identifier[0]")
        .with_evidence("ev-2")
        .as_dict(),
        Finding("INS.OID", "warning", "OID de test | inattendu", "/identifier/0/system").as_dict(),
    ]
    requirements = [
        RequirementResult(
            id="SC.INS/va1.01",
            title="Matricule INS et OID",
            service="INS",
            category="exigence",
            criticality="major",
            wave=1,
            status="passed",
            checks=[
                CheckOutcome(
                    scenario="ins-fhir-read",
                    step="read",
                    check="ins.identifier",
                    status="passed",
                    evidence=["ev-1"],
                )
            ],
        ),
        RequirementResult(
            id="SC.INS/va1.21",
            title="Traits stricts",
            service="INS",
            category="exigence",
            criticality="critical",
            wave=1,
            status="failed",
            note="Le DSR est muet sur ce point.",
            checks=[
                CheckOutcome(
                    scenario="ins-fhir-read",
                    step="search",
                    check="ins.traits",
                    status="failed",
                    findings=failed_findings,
                    evidence=["ev-2", "ev-3"],
                ),
            ],
        ),
        RequirementResult(
            id="SB.INS.01",
            title="Contexte LPS",
            service="INS",
            category="exigence",
            criticality="major",
            wave=1,
            status="skipped",
            reason="no driver URL: operator did not act",
        ),
        RequirementResult(
            id="SC.DMP/AIRS.06",
            title="Publication DMP",
            service="DMP",
            category="exigence",
            criticality="major",
            wave=2,
            status="error",
            reason="check dmp.metadata raised KeyError",
            checks=[
                CheckOutcome(
                    scenario="dmp-publish",
                    step="await",
                    check="dmp.metadata",
                    status="error",
                    reason="KeyError: 'classCode'",
                    evidence=["ev-missing"],
                )
            ],
        ),
        RequirementResult(
            id="SC.DMP/AIRS.07",
            title="Remplacement",
            service="DMP",
            category="préconisation",
            criticality="minor",
            wave=2,
            status="waived",
            reason="waiver W-12 until 2026-06-30",
        ),
    ]
    return RunResult(
        schema=RESULTS_SCHEMA_ID,
        run_id="run-2026-03-01-abc",
        complete=complete,
        interrupted=not complete,
        tool={"name": "segur-bench", "version": "0.1.0", "rules": "2026.03"},
        profile={"id": "segur-v2-ins", "version": "2026.11", "title": "Ségur vague 2 — INS"},
        target={"url": "https://vendor.test", "token": SECRET, "auth": {"password": SECRET, "user": "bench"}},
        product={"product": "DPI Exemple", "version": "4.2", "software_type": "DPI"},
        started="2026-03-01T10:00:00Z",
        finished="2026-03-01T10:00:09Z" if complete else None,
        requirements=requirements,
        evidence=[_evidence("ev-1"), hostile_ev, big_ev],
        summary={"passed": 1, "failed": 1, "error": 1, "skipped": 1, "waived": 1, "total": 5},
        notes=["L'API du téléservice CNAM n'est pas publique : hypothèses du simulateur."],
    )


@pytest.fixture(scope="module")
def run() -> dict[str, Any]:
    return make_run().to_json_dict()


@pytest.fixture(scope="module")
def html(run: dict[str, Any]) -> str:
    return render_html(run)


# ---------------------------------------------------------------------------------------------- JSON


def test_results_json_matches_shipped_schema(run: dict[str, Any]) -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    jsonschema.validate(json.loads(render_json(run)), SCHEMA, cls=jsonschema.Draft202012Validator)
    assert validate_results(run) == []
    empty = RunResult(schema=RESULTS_SCHEMA_ID, run_id="r", tool={}, profile={}, target={}, started="t").to_json_dict()
    assert validate_results(empty) == []


def test_schema_follows_the_model() -> None:
    """A field added to RunResult must be added to the schema (it is a contract: v1)."""
    from conformance.model import CheckOutcome as C
    from conformance.model import Evidence as E
    from conformance.model import RequirementResult as R

    top = {f.alias or name for name, f in RunResult.model_fields.items()}
    assert set(SCHEMA["properties"]) == top
    assert set(SCHEMA["$defs"]["requirement"]["properties"]) == set(R.model_fields)
    assert set(SCHEMA["$defs"]["check"]["properties"]) == set(C.model_fields)
    assert set(SCHEMA["$defs"]["evidence"]["properties"]) == set(E.model_fields)


@pytest.mark.parametrize(
    ("mutate", "pointer"),
    [
        (lambda d: d.update(schema="segur-bench/results/v2"), "/schema"),
        (lambda d: d["requirements"][0].update(status="ok"), "/requirements/0/status"),
        (
            lambda d: d["requirements"][1]["checks"][0]["findings"][0].update(severity="fatal"),
            "/requirements/1/checks/0/findings/0/severity",
        ),
        (lambda d: d["requirements"][0].update(criticality="high"), "/requirements/0/criticality"),
        (lambda d: d["evidence"][0].update(sha256="xyz"), "/evidence/0/sha256"),
        (lambda d: d.update(surprise=1), "/"),
    ],
)
def test_schema_is_strict_on_the_contract(run: dict[str, Any], mutate: Any, pointer: str) -> None:
    data = json.loads(json.dumps(run))
    mutate(data)
    errors = validate_results(data)
    assert errors and errors[0].startswith(pointer + ":")


def test_schema_is_lenient_in_free_dicts(run: dict[str, Any]) -> None:
    data = json.loads(json.dumps(run))
    data["target"]["extra"] = {"nested": [1, 2]}
    data["evidence"][0]["request"]["anything"] = True
    data["requirements"][1]["checks"][0]["findings"][0]["xpath_ns"] = {"cda": "urn:hl7-org:v3"}
    data["summary"]["by_service"] = {"INS": 3}
    assert validate_results(data) == []


# --------------------------------------------------------------------------------------------- JUnit


def test_junit_counts_and_cases(run: dict[str, Any]) -> None:
    xml = render_junit(run)
    root = ET.fromstring(xml.encode("utf-8"))
    assert root.tag == "testsuites"
    assert (root.get("tests"), root.get("failures"), root.get("errors"), root.get("skipped")) == (
        "5",
        "1",
        "1",
        "2",
    )
    suites = {s.get("name"): s for s in root.iter("testsuite")}
    assert set(suites) == {"segur-v2-ins.INS", "segur-v2-ins.DMP"}
    assert suites["segur-v2-ins.INS"].get("tests") == "3"
    props = {p.get("name"): p.get("value") for p in suites["segur-v2-ins.INS"].iter("property")}
    assert props["profile.id"] == "segur-v2-ins" and props["profile.version"] == "2026.11"
    assert props["tool.version"] == "0.1.0" and props["tool.rules"] == "2026.03"
    cases = {c.get("name"): c for c in root.iter("testcase")}
    failed = cases["SC.INS/va1.21 Traits stricts"]
    assert failed.get("classname") == "INS"
    failure = failed.find("failure")
    assert failure is not None and failure.get("type") == "INS.MATRICULE.KEY"
    assert "INS.MATRICULE.KEY @ Patient.identifier[0]" in (failure.text or "")
    assert "INS.OID" in (failure.text or "")
    err = cases["SC.DMP/AIRS.06 Publication DMP"].find("error")
    assert err is not None and "KeyError" in (err.text or "")
    waived = cases["SC.DMP/AIRS.07 Remplacement"].find("skipped")
    assert waived is not None and waived.get("message", "").startswith("waived: waiver W-12")
    skipped = cases["SB.INS.01 Contexte LPS"].find("skipped")
    assert skipped is not None and "no driver" in skipped.get("message", "")
    assert cases["SC.INS/va1.01 Matricule INS et OID"].find("failure") is None
    assert SECRET not in xml


def test_junit_survives_control_characters(run: dict[str, Any]) -> None:
    data = json.loads(json.dumps(run))
    data["requirements"][1]["checks"][0]["findings"][0]["message"] = "bad\x00byte\x1b[31m"
    root = ET.fromstring(render_junit(data).encode("utf-8"))
    assert root.get("failures") == "1"


# ---------------------------------------------------------------------------------------------- HTML


def test_html_contains_every_requirement_and_evidence_anchor(run: dict[str, Any], html: str) -> None:
    for req in run["requirements"]:
        assert req["id"] in html
    ids = set(re.findall(r'\sid="([^"]+)"', html))
    for eid in ("ev-1", "ev-2", "ev-3"):
        assert f"ev-{eid}" in ids
    # Every internal link resolves to an element of the page.
    for target in re.findall(r'href="#([^"]+)"', html):
        assert target in ids, target
    assert "ev-missing" in html and 'href="#ev-ev-missing"' not in html


def test_failed_evidence_is_two_clicks_away(html: str) -> None:
    """The failed requirement is open and listed first; its evidence link is a same-page anchor."""
    first = html.index('<details class="req')
    assert html.startswith('<details class="req st-row-failed" id="req-SC.INS-va1.21" open>', first)
    block = html[first : html.index("</details>", first)]
    assert 'href="#ev-ev-2"' in block
    assert '<details class="ev" id="ev-ev-2" open>' in html  # the target is visible once reached


def test_html_escapes_vendor_text(html: str) -> None:
    assert "<script" not in html  # the template has no script at all; vendor scripts are escaped
    assert "&lt;script&gt;alert(&#39;pwned&#39;)&lt;/script&gt;" in html
    assert "<img" not in html and "&lt;img src=&#34;https://evil.example/x.png&#34;" in html


def test_html_is_self_contained(html: str) -> None:
    assert not re.search(r"""(?:src|href|action|poster|srcset)\s*=\s*["']?\s*(?:https?:)?//""", html, re.I)
    css = "".join(re.findall(r"<style[^>]*>(.*?)</style>", html, re.S | re.I))
    css += "".join(re.findall(r'style\s*=\s*"([^"]*)"', html, re.I))
    assert css and not re.search(r"url\s*\(|@import", css, re.I)
    assert "@import" not in html and "<link" not in html.lower()
    assert "Content-Security-Policy" in html and "default-src 'none'" in html
    assert "<svg" in html and "bar-level" in html


def test_html_header_and_maturity_first(html: str) -> None:
    for text in (
        "DPI Exemple 4.2",
        "segur-v2-ins",
        "2026.11",
        "0.1.0",
        "https://vendor.test",
        "run-2026-03-01-abc",
    ):
        assert text in html
    assert html.index('id="maturity"') < html.index('id="summary"') < html.index('id="requirements"')
    assert html.index('id="requirements"') < html.index('id="evidence"')
    assert "Niveau global" in html
    assert "Exécution interrompue" not in html


def test_html_hides_secrets_and_truncates_bodies(html: str) -> None:
    assert SECRET not in html
    assert "Tronqué" in html and f"{BODY_LIMIT} premiers caractères" in html
    assert "x" * (BODY_LIMIT + 1) not in html


def test_html_shows_notes_and_reasons(html: str) -> None:
    assert "hypothèses du simulateur" in html
    assert "Le DSR est muet sur ce point." in html
    assert "no driver URL" in html and "waiver W-12" in html


def test_interrupted_banner() -> None:
    data = make_run(complete=False).to_json_dict()
    assert "Exécution interrompue — résultats incomplets" in render_html(data)
    assert "Run interrupted — results incomplete" in render_html(data, lang="en")
    assert "Exécution interrompue" in render_markdown(data)


def test_english_labels(run: dict[str, Any]) -> None:
    en = render_html(run, lang="en")
    assert '<html lang="en">' in en
    for label in ("Overall level", "Requirements", "Evidence", "Failed", "Waived", "Not tested"):
        assert label in en
    assert "Niveau global" not in en
    with pytest.raises(ValueError, match="unsupported report language"):
        render_html(run, lang="de")


# ------------------------------------------------------------------------------------------ Markdown


def test_markdown_lists_non_passed_first_findings(run: dict[str, Any]) -> None:
    md = render_markdown(run)
    assert "| `SC.INS/va1.21` Traits stricts | INS | Non conforme | Critique |" in md
    assert "`INS.MATRICULE.KEY` clé INS incorrecte &lt;script&gt;" in md
    assert "<script" not in md
    assert "`SC.DMP/AIRS.07`" in md and "`SC.INS/va1.01`" not in md
    assert "OID de test \\| inattendu" in md  # a pipe would split the table cell
    rows = [line for line in md.splitlines() if line.startswith("| `")]
    assert len(rows) == 4 and all(line.endswith("|") for line in rows)


def test_md_escape() -> None:
    assert md_escape("a\nb | [x](javascript:y) <b>") == "a b \\| \\[x\\](javascript:y) &lt;b&gt;"
    assert md_escape("é" * 300).endswith("…")


# ------------------------------------------------------------------------------------------- Writing


def test_write_reports(tmp_path: Path, run: dict[str, Any]) -> None:
    written = write_reports(run, tmp_path / "out")
    assert {k: p.name for k, p in written.items()} == {
        "json": "results.json",
        "html": "report.html",
        "junit": "junit.xml",
        "md": "report.md",
    }
    assert json.loads((tmp_path / "out/results.json").read_text(encoding="utf-8")) == run
    ET.parse(tmp_path / "out/junit.xml")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "junit.xml",
        "report.html",
        "report.md",
        "results.json",
    ]
    with pytest.raises(ValueError, match="unknown report format"):
        write_reports(run, tmp_path, formats=("docx",))


def test_accepts_run_result_objects() -> None:
    run = make_run()
    assert "SC.INS/va1.21" in render_html(run)
    assert json.loads(render_json(run)) == run.to_json_dict()


# ---------------------------------------------------------------------------------------------- Speed


def synthetic_run(n: int = 1000) -> dict[str, Any]:
    statuses = ("passed", "failed", "passed", "skipped", "error", "waived", "passed")
    services = ("INS", "DMP", "MSS", "PSC", "ORDN")
    reqs, evidence = [], []
    for i in range(n):
        eid = f"ev-{i:04d}"
        evidence.append(_evidence(eid, body=json.dumps({"resourceType": "Patient", "id": str(i), "pad": "y" * 1500})))
        status = statuses[i % len(statuses)]
        findings = (
            [
                Finding(f"INS.R{j}", "error", f"constat {j} <b>{i}</b>", f"/x/{j}").with_evidence(eid).as_dict()
                for j in range(3)
            ]
            if status == "failed"
            else []
        )
        reqs.append(
            RequirementResult(
                id=f"SC.{services[i % 5]}/{i:04d}",
                title=f"Exigence {i}",
                service=services[i % 5],
                category="exigence" if i % 4 else "préconisation",
                criticality=("critical", "major", "minor")[i % 3],
                wave=1 + i % 2,
                status=status,  # type: ignore[arg-type]
                checks=[
                    CheckOutcome(
                        scenario="s",
                        step=f"step{i}",
                        check="c",
                        status=status,  # type: ignore[arg-type]
                        findings=findings,
                        evidence=[eid],
                    )
                ],
            )
        )
    run = RunResult(
        schema=RESULTS_SCHEMA_ID,
        run_id="big",
        tool={"name": "segur-bench", "version": "0.1.0"},
        profile={"id": "big", "version": "1"},
        target={"url": "https://vendor.test"},
        started="t",
        complete=True,
        requirements=reqs,
        evidence=evidence,
    )
    return run.to_json_dict()


def test_render_1000_requirements_with_evidence() -> None:
    data = synthetic_run(1000)
    t0 = time.perf_counter()
    html = render_html(data)
    t1 = time.perf_counter()
    md = render_markdown(data)
    junit = render_junit(data)
    t2 = time.perf_counter()
    print(
        f"\n1,000 requirements + 1,000 evidence: html {t1 - t0:.3f} s ({len(html) / 1e6:.1f} MB), "
        f"md+junit {t2 - t1:.3f} s"
    )
    assert t2 - t0 < 30  # sanity only; speed is measured by `nox -s bench`
    assert html.count('<details class="req') == 1000
    assert ET.fromstring(junit.encode("utf-8")).get("tests") == "1000"
    assert "… et" in md  # capped for merge-request comments


def test_pdf_needs_the_optional_extra(run: dict[str, Any], tmp_path: Path) -> None:
    try:
        import weasyprint  # type: ignore[import-not-found, unused-ignore]  # noqa: F401
    except (ImportError, OSError):
        with pytest.raises(ImportError, match=r"segur-bench\[pdf\]|Pango"):
            render_pdf(run, tmp_path / "report.pdf")
        assert not (tmp_path / "report.pdf").exists()
    else:
        pdf = render_pdf(run, tmp_path / "report.pdf")
        assert pdf.startswith(b"%PDF") and (tmp_path / "report.pdf").read_bytes() == pdf
        # Evidence bodies are left out of the PDF (layout cost); the exchanges themselves are listed.
        assert len(pdf) > 5_000
