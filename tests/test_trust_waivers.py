"""Waivers: a valid waiver turns failed into waived (findings kept); expired/unused waivers fail the run."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

from conformance.engine.session import exit_code
from conformance.model import CheckOutcome, RequirementResult, RunResult, summarize
from conformance.report.render import render_html, render_junit, render_markdown
from conformance.trust.waivers import Waiver, WaiversError, apply_waivers, failing, load_waivers
from tests.conftest import run_cli

TODAY = dt.date(2025, 6, 1)


def make_run(statuses: dict[str, str], *, product: str = "MonDPI", run_id: str = "r1") -> RunResult:
    """A small finished run: one requirement per (id, status), each with a finding when failed."""
    reqs = []
    for rid, status in statuses.items():
        findings = [{"rule": "INS.KEY", "severity": "error", "message": "clé", "location": "/x"}]
        reqs.append(
            RequirementResult(
                id=rid,
                title=f"Exigence {rid}",
                service=rid.split(".")[1].split("/")[0] if "." in rid else "INS",
                category="exigence",
                criticality="major",
                wave=1,
                status=status,  # type: ignore[arg-type]
                checks=[
                    CheckOutcome(
                        scenario="s",
                        step="t",
                        check="c",
                        status=status,  # type: ignore[arg-type]
                        findings=findings if status == "failed" else [],
                    )
                ],
            )
        )
    return RunResult(
        run_id=run_id,
        complete=True,
        tool={"name": "segur-bench", "version": "0.1.0"},
        profile={"id": "p", "version": "1"},
        target={"base": "http://vendor.test"},
        product={"product": product, "version": "1.0"},
        started="2025-06-01T10:00:00.000Z",
        finished="2025-06-01T10:00:05.000Z",
        requirements=reqs,
        summary=summarize(r.status for r in reqs),  # type: ignore[misc]
    )


def w(rid: str, expires: dt.date = dt.date(2025, 12, 31)) -> Waiver:
    return Waiver(requirement=rid, justification="correctif en 4.3", expires=expires, author="J. Dupont")


def test_valid_waiver_turns_failed_into_waived_and_keeps_findings() -> None:
    run = make_run({"SC.INS/1": "failed", "SC.INS/2": "passed", "SC.INS/3": "error"})
    records = apply_waivers(run, [w("SC.INS/1"), w("SC.INS/3", TODAY)], today=TODAY)  # expires today: still valid
    req = run.requirements[0]
    assert req.status == "waived"
    assert req.checks[0].findings and req.checks[0].status == "failed"
    assert req.waiver is not None and req.waiver["original_status"] == "failed"
    assert "correctif en 4.3" in (req.reason or "") and "2025-12-31" in (req.reason or "")
    assert run.requirements[2].status == "waived"
    assert [r["status"] for r in records] == ["applied", "applied"]
    assert run.summary["waived"] == 2 and run.summary["failed"] == 0 and run.summary["total"] == 3
    assert not failing(records) and exit_code(run, "mandatory") == 0
    data = run.to_json_dict()
    from conformance.report.schema import validate_results

    validate_results(data)


def test_expired_waiver_leaves_the_failure_and_fails_the_run() -> None:
    run = make_run({"SC.INS/1": "failed", "SC.INS/2": "passed"})
    records = apply_waivers(run, [w("SC.INS/1", dt.date(2025, 5, 31))], today=TODAY)
    assert run.requirements[0].status == "failed"
    assert records[0]["status"] == "expired"
    assert exit_code(run, "mandatory") == 1


@pytest.mark.parametrize(
    ("rid", "expected"),
    [("SC.INS/2", "unused"), ("SC.NOPE/9", "unused"), ("SC.INS/4", "unused")],
)
def test_unused_waiver_is_a_failure(rid: str, expected: str) -> None:
    run = make_run({"SC.INS/1": "passed", "SC.INS/2": "passed", "SC.INS/4": "skipped"})
    records = apply_waivers(run, [w(rid)], today=TODAY)
    assert records[0]["status"] == expected
    assert exit_code(run, "mandatory") == 1
    assert exit_code(run, "none") == 0  # report-only mode stays report-only


def test_waiver_for_profile_requirement_outside_this_run_is_not_a_failure() -> None:
    run = make_run({"SC.INS/1": "passed"})
    records = apply_waivers(run, [w("SC.DMP/1")], today=TODAY, profile_ids={"SC.INS/1", "SC.DMP/1"})
    assert records[0]["status"] == "not_run"
    assert exit_code(run, "mandatory") == 0


def test_reports_show_waivers() -> None:
    run = make_run({"SC.INS/1": "failed", "SC.INS/2": "passed"})
    apply_waivers(run, [w("SC.INS/1"), w("SC.INS/2")], today=TODAY)
    html = render_html(run.to_json_dict())
    assert 'id="waivers"' in html and "correctif en 4.3" in html and "Inutilisée" in html
    md = render_markdown(run.to_json_dict(), lang="en")
    assert "Waivers" in md and "**Unused**" in md
    junit = render_junit(run.to_json_dict())
    assert 'name="p.waivers"' in junit and "waiver unused" in junit


# ---------------------------------------------------------------- file format


def _file(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "waivers.yaml"
    p.write_text(text, encoding="utf-8")
    return p


def test_load_valid_file(tmp_path: Path) -> None:
    p = _file(
        tmp_path,
        "- requirement: SC.INS/va1.21\n  justification: correctif\n  expires: 2030-01-31\n  author: moi\n"
        "- requirement: SC.INS/va1.01\n  justification: autre\n  expires: '2030-02-01'\n",
    )
    ws = load_waivers(p)
    assert [x.requirement for x in ws] == ["SC.INS/va1.21", "SC.INS/va1.01"]
    assert ws[0].expires == dt.date(2030, 1, 31) and ws[0].author == "moi" and ws[1].source == f"{p}:5"
    assert load_waivers(_file(tmp_path, "")) == []


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("- requirement: X\n  expires: 2030-01-01\n", 1, "justification"),
        ("- requirement: X\n  justification: ''\n  expires: 2030-01-01\n", 2, "blank"),
        ("- requirement: X\n  justification: '   '\n  expires: 2030-01-01\n", 2, "blank"),
        ("- requirement: X\n  justification: a\n  expires: 2030-13-01\n", 3, "not a date"),
        ("- requirement: X\n  justification: a\n  expires: 2030-02-30\n", 3, "not a date"),
        ("- requirement: X\n  justification: a\n  expires: next year\n", 3, "YYYY-MM-DD"),
        ("- requirement: X\n  justification: a\n  expires: 2030-01-01\n  why: 1\n", 1, "why"),
        (
            "- {requirement: X, justification: a, expires: 2030-01-01}\n- {requirement: X, justification: b, "
            "expires: 2030-01-01}\n",
            2,
            "second waiver",
        ),
        ("requirement: X\n", 1, "array"),
        ("- [unclosed\n", 2, "YAML"),
    ],
)
def test_invalid_files_report_file_and_line(tmp_path: Path, text: str, line: int, words: str) -> None:
    p = _file(tmp_path, text)
    with pytest.raises(WaiversError if "YAML" not in words else Exception) as info:
        load_waivers(p)
    msg = str(info.value)
    assert msg.startswith(f"{p}:{line}:"), msg
    assert words in msg, msg


# ---------------------------------------------------------------- end to end


@pytest.mark.e2e
def test_run_with_waiver_file(tmp_path: Path, vendor: Any) -> None:
    env = {"SEGUR_BENCH_DB": "off"}
    # The INS profile only: the same fault also degrades the DMP documents built from the identity.
    url = vendor("ins.missing-birth-place").url
    waivers = _file(
        tmp_path,
        "- requirement: SC.INS/va1.21\n  justification: Lieu de naissance manquant, correctif 4.3\n"
        "  expires: 2999-12-31\n",
    )
    proc = run_cli("run", "--target", url, "--profile", "segur-v2-ins", "--out", str(tmp_path / "a"), env=env)
    assert proc.returncode == 1  # without the waiver the fault fails the run
    proc = run_cli(
        "run",
        "--target",
        url,
        "--profile",
        "segur-v2-ins",
        "--out",
        str(tmp_path / "b"),
        "--waivers",
        str(waivers),
        env=env,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads((tmp_path / "b" / "results.json").read_text(encoding="utf-8"))
    req = next(r for r in data["requirements"] if r["id"] == "SC.INS/va1.21")
    assert req["status"] == "waived" and req["waiver"]["original_status"] == "failed"
    assert any(f for c in req["checks"] for f in c["findings"])
    assert data["waivers"][0]["status"] == "applied"
    assert "correctif 4.3" in (tmp_path / "b" / "report.html").read_text(encoding="utf-8")
    # the same waiver on a vendor that passes is unused: the run fails so the file gets cleaned up
    proc = run_cli("demo", "--out", str(tmp_path / "c"), "--waivers", str(waivers), env=env)
    assert proc.returncode == 1 and "unused" in proc.stdout


def test_invalid_waivers_file_is_exit_2(tmp_path: Path) -> None:
    p = _file(tmp_path, "- requirement: X\n  justification: ''\n  expires: 2030-01-01\n")
    proc = run_cli("demo", "--out", str(tmp_path / "o"), "--waivers", str(p), "--no-db")
    assert proc.returncode == 2
    assert f"{p}:2:" in proc.stderr and "Traceback" not in proc.stderr
    proc = run_cli("demo", "--out", str(tmp_path / "o"), "--waivers", str(tmp_path / "none.yaml"), "--no-db")
    assert proc.returncode == 2 and "no such file" in proc.stderr
