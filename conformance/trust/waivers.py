"""Waivers: accepted, dated derogations that turn a failed requirement into ``waived`` — and rot loudly.

Why: a vendor may have an accepted reason not to meet a requirement yet (a DSR clarification pending,
a fix scheduled). The waiver says so in every report, keeps the findings, and carries an expiry date.
A waiver that has expired, or that no longer matches a failure (the requirement passes now, or is not
in the profile), is itself a failure of the run: otherwise waiver files accumulate silently.

File format (YAML list, ``schemas/waivers.schema.json``)::

    - requirement: SC.INS/va1.21
      justification: "Lieu de naissance : correctif livré en 4.3 (ticket DPI-1234)"
      expires: 2025-12-31          # last valid day, inclusive
      author: "J. Dupont (RSSI)"   # optional
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from conformance.model import RunResult, summarize
from conformance.yamlio import DataError, PathKey, validate

WaiverStatus = Literal["applied", "expired", "unused", "not_run"]
FAILING: frozenset[str] = frozenset({"expired", "unused"})
"""Waiver statuses that make the run non-conformant (exit 1)."""


class WaiversError(DataError):
    """A waivers file that does not load or validate; ``errors`` lists every ``file:line: message``."""

    def __init__(self, errors: list[DataError]) -> None:
        first = errors[0]
        super().__init__(first.file, first.line, first.message)
        self.errors = errors


@dataclass(frozen=True, slots=True)
class Waiver:
    requirement: str
    justification: str
    expires: dt.date
    author: str | None = None
    ticket: str | None = None
    source: str | None = None
    """``file:line`` of the entry, so a failing waiver points at the line to edit."""

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "justification": self.justification,
            "expires": self.expires.isoformat(),
            "author": self.author,
        }
        if self.ticket:
            out["ticket"] = self.ticket
        if self.source:
            out["source"] = self.source
        return out


def _dates_to_text(data: Any) -> Any:
    """YAML reads ``2025-12-31`` as a date; the schema checks text, so give it back as ISO text."""
    if isinstance(data, list):
        return [_dates_to_text(x) for x in data]
    if isinstance(data, dict):
        return {k: _dates_to_text(v) for k, v in data.items()}
    if isinstance(data, dt.datetime):
        return data.isoformat()
    if isinstance(data, dt.date):
        return data.isoformat()
    return data


class _NoDatesLoader(yaml.SafeLoader):
    """SafeLoader that keeps ``2025-13-01`` as text: PyYAML's timestamp constructor raises a bare
    ValueError on impossible dates, which would lose the line number; we check dates ourselves."""


_NoDatesLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _lines(node: yaml.Node | None, path: PathKey, out: dict[PathKey, int]) -> dict[PathKey, int]:
    if node is None:
        return out
    out[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            _lines(value, (*path, key.value), out)
            out[(*path, key.value)] = key.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _lines(item, (*path, i), out)
    return out


def _read(path: Path) -> tuple[Any, dict[PathKey, int]]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(str(path), None, "no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(str(path), None, f"cannot read: {exc}") from None
    try:
        node = yaml.compose(text, Loader=_NoDatesLoader)
        data = yaml.load(text, Loader=_NoDatesLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise DataError(str(path), mark.line + 1 if mark else None, f"YAML syntax: {exc.problem or exc}") from None
    except (yaml.YAMLError, ValueError, RecursionError) as exc:
        raise DataError(str(path), None, f"YAML: {exc}") from None
    return data, _lines(node, (), {})


def _friendly(err: DataError) -> DataError:
    """jsonschema's wording for a blank justification quotes a regex; say what the author must do."""
    head, _, _ = err.message.partition(": ")
    if head.endswith("/justification"):
        return DataError(err.file, err.line, f"{head}: required and must not be blank (say why the waiver is accepted)")
    if head.endswith("/expires"):
        return DataError(err.file, err.line, f"{head}: must be a date YYYY-MM-DD (last valid day)")
    return err


def load_waivers(path: Path) -> list[Waiver]:
    """Load and validate a waivers file; raises :class:`WaiversError` (``file:line: message``)."""
    data, lines = _read(path)
    if data is None:
        return []
    data = _dates_to_text(data)
    errors = [_friendly(e) for e in validate(data, "waivers.schema.json", str(path), lines)]
    if errors:
        raise WaiversError(errors)
    out: list[Waiver] = []
    seen: dict[str, int | None] = {}
    for i, entry in enumerate(data):
        line = lines.get((i,))
        try:
            expires = dt.date.fromisoformat(entry["expires"])
        except ValueError:
            where = lines.get((i, "expires"), line)
            errors.append(DataError(str(path), where, f"{i}/expires: not a date: {entry['expires']}"))
            continue
        rid = entry["requirement"].strip()
        if rid in seen:
            errors.append(DataError(str(path), line, f"requirement {rid}: second waiver (first on line {seen[rid]})"))
            continue
        seen[rid] = line
        out.append(
            Waiver(
                requirement=rid,
                justification=entry["justification"].strip(),
                expires=expires,
                author=entry.get("author") or None,
                ticket=entry.get("ticket") or None,
                source=f"{path}:{line}" if line else str(path),
            )
        )
    if errors:
        raise WaiversError(errors)
    return out


def apply_waivers(
    result: RunResult,
    waivers: Iterable[Waiver],
    *,
    today: dt.date | None = None,
    profile_ids: Iterable[str] = (),
) -> list[dict[str, Any]]:
    """Apply waivers to a finished run, in place; returns (and stores in ``result.waivers``) one record each.

    - requirement failed/error and waiver valid (``expires`` ≥ today) → requirement ``waived``, findings
      kept, ``waiver`` block and ``reason`` say why and until when; record ``applied``;
    - waiver past its date → requirement unchanged; record ``expired`` (a failure);
    - requirement passed / skipped, or absent from the profile → record ``unused`` (a failure);
    - requirement of the profile outside this run (``--service``) → record ``not_run`` (not a failure:
      one waivers file serves runs of single services).
    """
    today = today or dt.date.today()
    by_id = {r.id: r for r in result.requirements}
    known = set(profile_ids) | set(by_id)
    records: list[dict[str, Any]] = []
    for w in waivers:
        rec: dict[str, Any] = {"id": w.requirement, **w.as_dict()}
        req = by_id.get(w.requirement)
        if w.expires < today:
            rec["status"] = "expired"
            rec["reason"] = f"expired on {w.expires.isoformat()}"
            if req is not None:
                rec["requirement_status"] = req.status
        elif req is None:
            if w.requirement in known:
                rec["status"] = "not_run"
                rec["reason"] = "requirement not part of this run"
            else:
                rec["status"] = "unused"
                rec["reason"] = "no such requirement in the profile"
        elif req.status in ("failed", "error"):
            rec["status"] = "applied"
            rec["requirement_status"] = req.status
            req.waiver = {"original_status": req.status, **w.as_dict()}
            why = f"waived until {w.expires.isoformat()} — {w.justification}"
            req.reason = f"{why} ({req.reason})" if req.reason else why
            req.status = "waived"
        else:
            rec["status"] = "unused"
            rec["requirement_status"] = req.status
            rec["reason"] = f"requirement {req.status}: the waiver is no longer needed"
        records.append(rec)
    counts = summarize(r.status for r in result.requirements)
    result.summary = {**result.summary, **counts}
    result.waivers = records
    return records


def failing(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Waiver records that make the run non-conformant (expired or unused)."""
    return [r for r in records if r.get("status") in FAILING]
