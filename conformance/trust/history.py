"""Run history in an embedded SQLite file: which runs happened, per product, and the maturity trend.

Why SQLite and not a server: a run is one process (DESIGN.md); an auditor or a CI job can copy the
file. Why a row at run *start*, updated after every scenario, in WAL mode: a run killed half-way keeps
its row (``complete = 0``) with what it measured, exactly like ``results.json``.

The history must never cost a run: a database that cannot be written is reported once by the caller
and the run goes on (:class:`HistoryRecorder` swallows ``sqlite3.Error`` and remembers the first one).
Path: ``--db PATH``, else ``$SEGUR_BENCH_DB``, else ``$XDG_DATA_HOME/segur-bench/history.sqlite3``
(``~/.local/share/…``). ``SEGUR_BENCH_DB=off`` (or ``--no-db``) disables it.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterator, Mapping
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

from conformance.model import RunResult

ENV_DB = "SEGUR_BENCH_DB"
_OFF = {"", "off", "none", "0", "false", "no"}
SCHEMA_VERSION = 1

_DDL = """
CREATE TABLE IF NOT EXISTS runs (
    run_id           TEXT PRIMARY KEY,
    product          TEXT NOT NULL,
    product_version  TEXT,
    profile_id       TEXT NOT NULL,
    profile_version  TEXT,
    target           TEXT,
    started          TEXT NOT NULL,
    finished         TEXT,
    complete         INTEGER NOT NULL DEFAULT 0,
    interrupted      INTEGER NOT NULL DEFAULT 0,
    passed           INTEGER NOT NULL DEFAULT 0,
    failed           INTEGER NOT NULL DEFAULT 0,
    error            INTEGER NOT NULL DEFAULT 0,
    skipped          INTEGER NOT NULL DEFAULT 0,
    waived           INTEGER NOT NULL DEFAULT 0,
    total            INTEGER NOT NULL DEFAULT 0,
    maturity_level   INTEGER,
    maturity_score   REAL,
    maturity_services TEXT,
    waivers_failing  INTEGER NOT NULL DEFAULT 0,
    signed           INTEGER NOT NULL DEFAULT 0,
    exit_code        INTEGER,
    results_path     TEXT,
    updated          TEXT
);
CREATE INDEX IF NOT EXISTS runs_product ON runs(product, started);
"""

COLUMNS = (
    *("run_id", "product", "product_version", "profile_id", "profile_version", "target", "started", "finished"),
    *("complete", "interrupted", "passed", "failed", "error", "skipped", "waived", "total"),
    *("maturity_level", "maturity_score", "maturity_services", "waivers_failing", "signed", "exit_code"),
    *("results_path", "updated"),
)


def default_db_path(env: Mapping[str, str] | None = None) -> Path | None:
    """Where the history lives when ``--db`` is not given; ``None`` when disabled by the environment."""
    env = os.environ if env is None else env
    if ENV_DB in env:
        value = env[ENV_DB].strip()
        return None if value.lower() in _OFF else Path(value).expanduser()
    base = env.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "segur-bench" / "history.sqlite3"


def connect(path: Path) -> sqlite3.Connection:
    """Open (creating the folder, file and table) in WAL mode with a busy timeout for parallel runs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), timeout=5.0)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.executescript(_DDL)
        conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
    except BaseException:
        conn.close()
        raise
    return conn


def product_name(result: RunResult) -> str:
    """The product a run is filed under: what the driver/target declared, else the target URL."""
    p = result.product
    name = p.get("product") or p.get("name")
    if isinstance(name, str) and name.strip():
        return name.strip()
    base = result.target.get("base") or result.target.get("url")
    return str(base) if base else "(unknown)"


def row_of(
    result: RunResult,
    *,
    results_path: Path | None = None,
    maturity: Mapping[str, Any] | None = None,
    exit_code: int | None = None,
) -> dict[str, Any]:
    """The history row for a run (pure: no database), so tests and the recorder share one mapping."""
    counts = {k: int(result.summary.get(k, 0) or 0) for k in ("passed", "failed", "error", "skipped", "waived")}
    services = None
    level = score = None
    if maturity is not None:
        level = maturity["overall"]["level"]
        score = maturity["overall"]["score"]
        services = json.dumps(
            {s: {"level": m["level"], "score": m["score"]} for s, m in maturity["services"].items()},
            sort_keys=True,
        )
    version = result.product.get("version")
    return {
        "run_id": result.run_id,
        "product": product_name(result),
        "product_version": str(version) if version is not None else None,
        "profile_id": result.profile.get("id", "?"),
        "profile_version": result.profile.get("version"),
        "target": result.target.get("base") or result.target.get("url"),
        "started": result.started,
        "finished": result.finished if result.complete else None,
        "complete": int(result.complete),
        "interrupted": int(result.interrupted),
        **counts,
        "total": sum(counts.values()),
        "maturity_level": level,
        "maturity_score": score,
        "maturity_services": services,
        "waivers_failing": sum(1 for w in result.waivers if w.get("status") in ("expired", "unused")),
        "signed": int(result.signature is not None),
        "exit_code": exit_code,
        "results_path": str(results_path) if results_path is not None else None,
        "updated": result.finished,
    }


def upsert(conn: sqlite3.Connection, row: Mapping[str, Any]) -> None:
    cols = [c for c in COLUMNS if c in row]
    placeholders = ",".join("?" for _ in cols)
    updates = ",".join(f"{c}=excluded.{c}" for c in cols if c != "run_id")
    with conn:
        conn.execute(
            f"INSERT INTO runs ({','.join(cols)}) VALUES ({placeholders}) ON CONFLICT(run_id) DO UPDATE SET {updates}",
            [row[c] for c in cols],
        )


def maturity_of(result: RunResult) -> dict[str, Any] | None:
    """Maturity of a (possibly partial) run with the default model; ``None`` if it cannot be computed."""
    from conformance.report.maturity import MaturityModelError, compute_maturity, load_maturity_model

    try:
        model = load_maturity_model()
    except MaturityModelError:
        return None
    data = {"requirements": [r.model_dump(mode="json") for r in result.requirements]}
    return compute_maturity(data, model)


class HistoryRecorder:
    """Records one run: a row at start, updated after every scenario and at the end.

    Thread-safe (the engine reports partial results from worker threads); each call opens its own
    short-lived connection, so no connection crosses threads and an abrupt exit leaves no lock.
    """

    def __init__(self, path: Path, results_path: Path | None = None) -> None:
        self.path = path
        self.results_path = results_path
        self.error: str | None = None
        self._lock = threading.Lock()

    def check(self) -> None:
        """Open the database once up front; raises ``sqlite3.Error``/``OSError`` if it is unusable."""
        with closing(connect(self.path)):
            pass

    def record(self, result: RunResult, *, exit_code: int | None = None, with_maturity: bool = True) -> None:
        if self.error is not None:
            return
        with self._lock:
            try:
                row = row_of(
                    result,
                    results_path=self.results_path,
                    maturity=maturity_of(result) if with_maturity else None,
                    exit_code=exit_code,
                )
                with closing(connect(self.path)) as conn:
                    upsert(conn, row)
            except (sqlite3.Error, OSError) as exc:
                self.error = f"run history {self.path}: {exc}"


@contextmanager
def _reading(path: Path) -> Iterator[sqlite3.Connection]:
    if not path.exists():
        raise FileNotFoundError(str(path))
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5.0)
    try:
        yield conn
    finally:
        conn.close()


def list_runs(path: Path, *, product: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
    """Past runs, oldest first per product, each with ``trend`` against the previous run of the same
    product and profile: ``↑`` better maturity (level, then score), ``↓`` worse, ``=`` same, ``·`` first
    run or not comparable (incomplete runs are listed but never used as the reference of a trend).
    """
    with _reading(path) as conn:
        conn.row_factory = sqlite3.Row
        sql = "SELECT * FROM runs"
        args: list[Any] = []
        if product is not None:
            sql += " WHERE product = ?"
            args.append(product)
        sql += " ORDER BY product, started, run_id"
        rows = [dict(r) for r in conn.execute(sql, args)]
    last: dict[tuple[str, str], dict[str, Any]] = {}
    for row in rows:
        key = (row["product"], row["profile_id"])
        prev = last.get(key)
        row["complete"] = bool(row["complete"])
        row["interrupted"] = bool(row["interrupted"])
        row["signed"] = bool(row.get("signed"))
        row["maturity_services"] = json.loads(row["maturity_services"]) if row.get("maturity_services") else {}
        row["trend"] = trend(prev, row) if row["complete"] else "·"
        if row["complete"]:
            last[key] = row
    if limit is not None:
        rows = rows[-limit:]
    return rows


def _rank(row: Mapping[str, Any]) -> tuple[int, float]:
    return (int(row.get("maturity_level") or 0), float(row.get("maturity_score") or 0.0))


def trend(prev: Mapping[str, Any] | None, cur: Mapping[str, Any]) -> str:
    if prev is None or cur.get("maturity_level") is None or prev.get("maturity_level") is None:
        return "·"
    a, b = _rank(prev), _rank(cur)
    return "↑" if b > a else "↓" if b < a else "="
