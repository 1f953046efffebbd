"""diff OLD NEW: regressions (passed/waived → failed/error) exit 1; improvements, appearances do not."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conformance.trust.diff import diff_results, render_markdown
from tests.conftest import run_cli
from tests.test_trust_waivers import make_run


def _ids(d: dict, kind: str) -> list[str]:
    return [e["id"] for e in d[kind]]


def test_classification() -> None:
    old = make_run(
        {
            "A.INS/1": "passed",
            "A.INS/2": "failed",
            "A.INS/3": "waived",
            "A.INS/4": "passed",
            "A.INS/5": "passed",
            "A.INS/9": "passed",
        }
    ).to_json_dict()
    new = make_run(
        {
            "A.INS/1": "failed",
            "A.INS/2": "passed",
            "A.INS/3": "error",
            "A.INS/4": "skipped",
            "A.INS/5": "passed",
            "A.INS/7": "failed",
        }
    ).to_json_dict()
    d = diff_results(old, new)
    assert _ids(d, "regressed") == ["A.INS/1", "A.INS/3"]
    assert _ids(d, "improved") == ["A.INS/2"]
    assert _ids(d, "appeared") == ["A.INS/7"]
    assert _ids(d, "disappeared") == ["A.INS/9"]
    assert _ids(d, "changed") == ["A.INS/4"]
    assert d["regressions"] == 2
    assert d["old"]["maturity"] is not None and d["new"]["maturity"] is not None
    md = render_markdown(d)
    assert "regression" in md and "A.INS/3" in md.replace("\\", "")


def test_identical_runs_have_no_changes() -> None:
    run = make_run({"A.INS/1": "passed", "A.INS/2": "failed"}).to_json_dict()
    d = diff_results(run, run)
    assert d["regressions"] == 0 and all(v == 0 for v in d["summary"].values())


def _write(tmp_path: Path, name: str, statuses: dict[str, str]) -> Path:
    p = tmp_path / name
    p.write_text(json.dumps(make_run(statuses, run_id=name).to_json_dict()), encoding="utf-8")
    return p


@pytest.mark.e2e
def test_cli_exit_codes_and_formats(tmp_path: Path) -> None:
    good = _write(tmp_path, "good.json", {"A.INS/1": "passed", "A.INS/2": "passed"})
    bad = _write(tmp_path, "bad.json", {"A.INS/1": "failed", "A.INS/2": "passed", "A.INS/3": "passed"})
    proc = run_cli("diff", str(good), str(bad))
    assert proc.returncode == 1 and "regressed" in proc.stdout and "A.INS/1" in proc.stdout
    proc = run_cli("diff", str(bad), str(good), "--format", "json")
    assert proc.returncode == 0
    d = json.loads(proc.stdout)
    assert _ids(d, "improved") == ["A.INS/1"] and _ids(d, "disappeared") == ["A.INS/3"]
    proc = run_cli("diff", str(good), str(bad), "--format", "md")
    assert proc.returncode == 1 and proc.stdout.startswith("## segur-bench diff")
    garbage = tmp_path / "garbage.json"
    garbage.write_text("[1, 2", encoding="utf-8")
    for args in ((str(good), str(garbage)), (str(tmp_path / "nope.json"), str(good))):
        proc = run_cli("diff", *args)
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
