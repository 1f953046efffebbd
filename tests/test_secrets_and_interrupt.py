"""Secrets never reach results, reports or logs; Ctrl-C leaves valid, incomplete results."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conformance.simulators.server import BackgroundServer
from conformance.simulators.vendor import create_vendor_app
from tests.conftest import EXE, run_cli
from tests.hostile import HostileFhir

pytestmark = pytest.mark.e2e

TOKEN = "s3cr3t-T0KEN-9f8e7d6c5b4a"
PASSWORD = "hunter2-Pa55word!"


def test_bearer_token_and_password_never_appear_anywhere(tmp_path: Path) -> None:
    # The hostile vendor echoes the Authorization header it receives back into its bodies.
    srv = BackgroundServer(HostileFhir(create_vendor_app(), "echo-auth"), name="echo").start()
    target = tmp_path / "target.toml"
    target.write_text(
        f'[target]\nbase = "{srv.url}"\n[auth]\nbearer_env = "VENDOR_TOKEN"\nsecret_envs = ["VENDOR_PASSWORD"]\n'
        "[timeouts]\nhttp = 5\nawait = 10\n",
        encoding="utf-8",
    )
    out = tmp_path / "out"
    try:
        proc = run_cli(
            "run", "--target", str(target), "--out", str(out), env={"VENDOR_TOKEN": TOKEN, "VENDOR_PASSWORD": PASSWORD}
        )
    finally:
        srv.stop()
    assert proc.returncode == 1  # the echoing vendor serves no Patient
    texts = [proc.stdout, proc.stderr] + [p.read_text(encoding="utf-8") for p in out.iterdir() if p.is_file()]
    assert len(texts) >= 5
    for text in texts:
        assert TOKEN not in text
        assert PASSWORD not in text
    results = (out / "results.json").read_text(encoding="utf-8")
    assert "REDACTED" in results  # the header was recorded, masked


def test_missing_secret_env_is_exit_2(tmp_path: Path) -> None:
    target = tmp_path / "target.toml"
    target.write_text('[target]\nbase = "http://127.0.0.1:9"\n[auth]\nbearer_env = "SB_NOPE_UNSET"\n', encoding="utf-8")
    proc = run_cli("run", "--target", str(target), "--out", str(tmp_path), env={})
    assert proc.returncode == 2
    assert "SB_NOPE_UNSET" in proc.stderr and "Traceback" not in proc.stderr


def test_sigint_leaves_valid_incomplete_results_and_report(tmp_path: Path) -> None:
    # A vendor whose FHIR API hangs keeps the run busy long enough to interrupt it.
    srv = BackgroundServer(HostileFhir(create_vendor_app(), "hang"), name="hang").start()
    target = tmp_path / "target.toml"
    target.write_text(f'[target]\nbase = "{srv.url}"\n[timeouts]\nhttp = 30\nawait = 30\n', encoding="utf-8")
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [EXE, "run", "--target", str(target), "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "NO_COLOR": "1"},
    )
    try:
        deadline = time.monotonic() + 30
        while not (out / "results.json").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.0)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
        srv.stop()
    assert "Traceback" not in stdout + stderr
    assert proc.returncode == 2
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert results["complete"] is False
    assert results["interrupted"] is True
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "incompl" in html.lower()
