"""Shared fixtures: the official data folder (tests skip cleanly without it), servers on loopback."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
EXE = str(Path(sys.executable).parent / "segur-bench")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if SHARED_DATA.is_dir():
        return
    skip = pytest.mark.skip(reason="../shared/data is absent")
    for item in items:
        if "shared" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _isolated_history(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs started by tests record their history in a temporary database, never in $HOME."""
    if "SEGUR_BENCH_DB" not in os.environ:
        monkeypatch.setenv("SEGUR_BENCH_DB", str(tmp_path_factory.mktemp("history") / "history.sqlite3"))


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is absent")
    return SHARED_DATA


def run_cli(
    *args: str, timeout: float = 120, env: dict[str, str] | None = None, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the real console script; never inherits a TTY."""
    full_env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1", **(env or {})}
    return subprocess.run(
        [EXE, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
        input=input if input is not None else "",
        check=False,
    )


@pytest.fixture
def vendor() -> Iterator[object]:
    """Factory starting the reference vendor (optionally with faults) on loopback."""
    from conformance.simulators.server import BackgroundServer
    from conformance.simulators.vendor import create_vendor_app

    started: list[BackgroundServer] = []

    def start(*faults: str) -> BackgroundServer:
        srv = BackgroundServer(create_vendor_app(faults=frozenset(faults)), name="vendor").start()
        started.append(srv)
        return srv

    yield start
    for srv in started:
        srv.stop()
