"""Run history: a row at run start (kept when the run dies), updated at the end, listed with trends.

Every test points the history at a temporary file (``--db`` or ``SEGUR_BENCH_DB``): nothing is written
under $HOME.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from conformance.trust.history import HistoryRecorder, default_db_path, list_runs, trend
from tests.conftest import run_cli
from tests.test_trust_waivers import make_run


def test_default_path_honours_env_and_xdg(tmp_path: Path) -> None:
    assert default_db_path({"SEGUR_BENCH_DB": str(tmp_path / "h.db")}) == tmp_path / "h.db"
    assert default_db_path({"SEGUR_BENCH_DB": "off"}) is None
    assert default_db_path({"XDG_DATA_HOME": str(tmp_path)}) == tmp_path / "segur-bench" / "history.sqlite3"
    assert str(default_db_path({})).endswith(".local/share/segur-bench/history.sqlite3")


def test_interrupted_run_keeps_its_row(tmp_path: Path) -> None:
    db = tmp_path / "h.sqlite3"
    rec = HistoryRecorder(db, results_path=tmp_path / "results.json")
    rec.check()
    run = make_run({"SC.INS/1": "passed", "SC.INS/2": "failed"})
    run.complete = False
    run.finished = None
    rec.record(run)  # start / per-scenario update; the process then dies: no final record
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    rows = list_runs(db)
    assert len(rows) == 1 and rows[0]["complete"] is False and rows[0]["trend"] == "·"
    assert rows[0]["passed"] == 1 and rows[0]["failed"] == 1
    run.complete = True
    run.finished = "2025-06-01T10:00:05.000Z"
    rec.record(run, exit_code=1)
    rows = list_runs(db)
    assert len(rows) == 1 and rows[0]["complete"] is True and rows[0]["exit_code"] == 1
    assert rows[0]["maturity_level"] == 2 and rows[0]["maturity_services"] == {"INS": {"level": 2, "score": 50.0}}
    assert rows[0]["results_path"] == str(tmp_path / "results.json")


def test_trend_per_product_and_profile(tmp_path: Path) -> None:
    db = tmp_path / "h.sqlite3"
    rec = HistoryRecorder(db)
    seq = [
        ("a1", "A", {"SC.INS/1": "passed", "SC.INS/2": "failed"}),
        ("b1", "B", {"SC.INS/1": "passed"}),
        ("a2", "A", {"SC.INS/1": "passed", "SC.INS/2": "passed"}),
        ("a3", "A", {"SC.INS/1": "passed", "SC.INS/2": "passed"}),
        ("a4", "A", {"SC.INS/1": "failed", "SC.INS/2": "passed"}),
    ]
    for i, (rid, product, statuses) in enumerate(seq):
        run = make_run(statuses, product=product, run_id=rid)
        run.started = f"2025-06-0{i + 1}T10:00:00.000Z"
        rec.record(run, exit_code=0)
    assert rec.error is None
    rows = list_runs(db, product="A")
    assert [(r["run_id"], r["trend"]) for r in rows] == [("a1", "·"), ("a2", "↑"), ("a3", "="), ("a4", "↓")]
    assert [r["run_id"] for r in list_runs(db)] == ["a1", "a2", "a3", "a4", "b1"]
    assert trend({"maturity_level": 2, "maturity_score": 50}, {"maturity_level": 2, "maturity_score": 60}) == "↑"


def test_unwritable_history_never_breaks_a_run(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x", encoding="utf-8")
    rec = HistoryRecorder(blocker / "sub" / "h.sqlite3")
    rec.record(make_run({"SC.INS/1": "passed"}))
    assert rec.error is not None and "run history" in rec.error


@pytest.mark.e2e
def test_demo_records_history_and_history_command(tmp_path: Path) -> None:
    db = tmp_path / "h.sqlite3"
    env = {"SEGUR_BENCH_DB": str(db)}
    assert run_cli("demo", "--out", str(tmp_path / "a"), env=env).returncode == 0
    assert run_cli("demo", "--out", str(tmp_path / "b"), "--fault", "ins.bad-key", env=env).returncode == 1
    assert run_cli("demo", "--out", str(tmp_path / "c"), "--no-db", env=env).returncode == 0
    proc = run_cli("history", "--format", "json", env=env)
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert len(rows) == 2
    assert [r["trend"] for r in rows] == ["·", "↓"]
    assert all(r["complete"] for r in rows) and rows[1]["failed"] > 0
    assert rows[0]["results_path"] == str((tmp_path / "a" / "results.json").resolve())
    proc = run_cli("history", "--product", "segur-bench reference vendor", "--db", str(db))
    assert proc.returncode == 0 and "↓" in proc.stdout
    proc = run_cli("history", "--product", "nothing", "--db", str(db))
    assert proc.returncode == 0 and "no runs recorded" in proc.stdout


@pytest.mark.e2e
def test_history_errors_are_exit_2(tmp_path: Path) -> None:
    proc = run_cli("history", "--db", str(tmp_path / "none.sqlite3"))
    assert proc.returncode == 2 and "no run history" in proc.stderr
    junk = tmp_path / "junk.sqlite3"
    junk.write_bytes(b"not a database" * 100)
    proc = run_cli("history", "--db", str(junk))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    blocker = tmp_path / "file"
    blocker.write_text("x", encoding="utf-8")
    proc = run_cli("demo", "--out", str(tmp_path / "o"), "--db", str(blocker / "h.sqlite3"))
    assert proc.returncode == 2 and "--db" in proc.stderr
