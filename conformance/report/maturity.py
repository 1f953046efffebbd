"""Convergence-style maturity: levels per service socle, an overall level and a 0–100 score.

The model is data (``profiles/maturity-default.yaml``, validated by ``schemas/maturity.schema.json``) so
that ANS auditors and profile authors can read and change it without touching code. Its conditions use
a closed vocabulary interpreted here — ``all``/``any``/``none`` over a selector with ``status_in`` /
``with_findings``, combined with ``all_of``/``any_of``/``not`` — never ``eval`` of strings, because a
profile is a file a third party may hand us.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, cast

import yaml
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from conformance.model import Status, summarize
from conformance.report._yamlpos import compose, line_of, pointer
from conformance.yamlio import DataError

_PACKAGE = Path(__file__).resolve().parent.parent
DEFAULT_MODEL_PATH = _PACKAGE / "profiles" / "maturity-default.yaml"
SCHEMA_PATH = _PACKAGE / "schemas" / "maturity.schema.json"

_STATUSES = ("passed", "failed", "error", "skipped", "waived")


class MaturityModelError(DataError, ValueError):
    """A maturity model that cannot be used; ``errors`` holds one ``file:line: message`` per problem.

    A :class:`~conformance.yamlio.DataError` so that ``profiles lint`` and the CLI report it like any
    other broken data file (exit 2, no traceback); ``str()`` lists every problem, one per line.
    """

    def __init__(self, errors: Sequence[str], *, file: str = "<maturity>", line: int | None = None) -> None:
        self.errors = list(errors)
        self.file = file
        self.line = line
        self.message = "\n".join(self.errors)
        Exception.__init__(self, self.message)


@lru_cache(maxsize=1)
def _validator() -> Draft202012Validator:
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    return Draft202012Validator(schema)


def _leaf(error: ValidationError) -> tuple[ValidationError, str]:
    """Pick the most specific sub-error of a ``oneOf``/``anyOf`` so the message names the real mistake.

    jsonschema reports a bad condition as "not valid under any of the given schemas"; the deepest
    sub-error (an unknown selector key, a bad status) is what a profile author needs. When no branch
    gets deeper than the object itself, the schema's own title/description say what was expected.
    """
    while error.context:
        deepest = max(
            error.context,
            key=lambda e: (len(e.absolute_path), e.validator not in ("required", "oneOf", "anyOf")),
        )
        if len(deepest.absolute_path) <= len(error.absolute_path):
            break
        error = deepest
    if error.validator in ("oneOf", "anyOf") and isinstance(error.schema, dict) and "description" in error.schema:
        return error, f"invalid {error.schema.get('title', 'value')}: {error.schema['description']}"
    return error, error.message


def validate_maturity_model(
    data: Any, *, source: str = "<maturity>", root_node: yaml.Node | None = None
) -> dict[str, Any]:
    """Validate a maturity model already loaded (e.g. inline in a profile) and return it.

    ``root_node`` (the composed YAML) lets errors carry line numbers; without it they carry the JSON
    pointer only. Raises :class:`MaturityModelError` listing every problem, not just the first.
    """
    errors: list[tuple[int, str]] = []

    def where(path: Iterable[Any]) -> str:
        path = list(path)
        line = line_of(root_node, path)
        ptr = pointer(path)
        loc = f"{source}:{line}" if line is not None else source
        return f"{loc}: {ptr + ': ' if ptr else ''}"

    for err in sorted(_validator().iter_errors(data), key=lambda e: [str(p) for p in e.absolute_path]):
        leaf, message = _leaf(err)
        errors.append((line_of(root_node, leaf.absolute_path) or 0, where(leaf.absolute_path) + message))
    if not errors:
        # Semantics the schema cannot express: a ladder 0..N without holes, level 0 unconditional.
        levels = data["levels"]
        for index, entry in enumerate(levels):
            path: list[Any] = ["levels", index]
            if entry["level"] != index:
                errors.append(
                    (
                        line_of(root_node, path) or 0,
                        where([*path, "level"])
                        + f"levels must be listed in order 0, 1, 2… without gaps: expected {index}, "
                        f"got {entry['level']}",
                    )
                )
            if index == 0 and "when" in entry:
                errors.append((line_of(root_node, path) or 0, where([*path, "when"]) + "level 0 takes no condition"))
            if index > 0 and "when" not in entry:
                errors.append((line_of(root_node, path) or 0, where(path) + f"level {index} needs a `when` condition"))
    if errors:
        errors.sort(key=lambda e: e[0])
        raise MaturityModelError([msg for _, msg in errors], file=source, line=errors[0][0] or None)
    return dict(data)


@lru_cache(maxsize=8)
def _load_cached(path: str, mtime_ns: int) -> dict[str, Any]:
    text = Path(path).read_text(encoding="utf-8")
    try:
        root = compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise MaturityModelError(
            [f"{path}{line}: invalid YAML: {problem}"],
            file=path,
            line=mark.line + 1 if mark is not None else None,
        ) from None
    return validate_maturity_model(data, source=path, root_node=root)


def load_maturity_model(path: str | Path | None = None) -> dict[str, Any]:
    """Load and validate a maturity model YAML file; the shipped default when ``path`` is None.

    Errors are raised as :class:`MaturityModelError` with ``file:line: message`` lines. The parsed
    model is cached per file version (reports of large runs load it once), and a deep copy is
    returned so a caller cannot corrupt the cache.
    """
    target = Path(path) if path is not None else DEFAULT_MODEL_PATH
    try:
        stat = target.stat()
    except OSError as exc:
        raise MaturityModelError(
            [f"{target}: cannot read maturity model: {exc.strerror or exc}"], file=str(target)
        ) from None
    return copy.deepcopy(_load_cached(str(target), stat.st_mtime_ns))


# --------------------------------------------------------------------------------------------------
# Evaluation


@dataclass(frozen=True, slots=True)
class _Req:
    """The facts about one requirement result that conditions can look at."""

    id: str
    category: str
    criticality: str
    wave: int | None
    status: Status
    severities: frozenset[str]


def _facts(req: Mapping[str, Any]) -> _Req:
    status = req.get("status")
    severities = frozenset(
        str(f.get("severity"))
        for check in req.get("checks") or ()
        for f in (check.get("findings") or ())
        if isinstance(f, Mapping)
    )
    wave = req.get("wave")
    return _Req(
        id=str(req.get("id", "")),
        category=str(req.get("category", "exigence")),
        criticality=str(req.get("criticality", "major")),
        wave=wave if isinstance(wave, int) else None,
        # An unknown status in a hand-edited file is treated as the worst case, never as a pass.
        status=cast(Status, status) if status in _STATUSES else "error",
        severities=severities,
    )


def _as_set(value: Any) -> set[Any]:
    return set(value) if isinstance(value, list) else {value}


def _selected(req: _Req, selector: Mapping[str, Any]) -> bool:
    for key, wanted in selector.items():
        if key == "category":
            ok = req.category in _as_set(wanted)
        elif key == "criticality":
            ok = req.criticality in _as_set(wanted)
        elif key == "wave":
            ok = req.wave in _as_set(wanted)
        elif key == "id":
            ok = req.id in _as_set(wanted)
        else:
            raise ValueError(f"unknown selector key {key!r}")
        if not ok:
            return False
    return True


def _matches(req: _Req, cond: Mapping[str, Any]) -> bool:
    if "status_in" in cond and req.status not in cond["status_in"]:
        return False
    return not ("with_findings" in cond and not req.severities.intersection(cond["with_findings"]))


def evaluate(cond: Mapping[str, Any], reqs: Sequence[_Req]) -> bool:
    """Evaluate one condition of the vocabulary over the requirement facts of one service."""
    if "all_of" in cond:
        return all(evaluate(c, reqs) for c in cond["all_of"])
    if "any_of" in cond:
        return any(evaluate(c, reqs) for c in cond["any_of"])
    if "not" in cond:
        return not evaluate(cond["not"], reqs)
    for quantifier in ("all", "any", "none"):
        if quantifier in cond:
            pool = [r for r in reqs if _selected(r, cond[quantifier])]
            if quantifier == "all":
                return all(_matches(r, cond) for r in pool)
            hits = sum(1 for r in pool if _matches(r, cond))
            if quantifier == "any":
                return hits >= int(cond.get("at_least", 1))
            return hits == 0
    raise ValueError(f"unknown maturity condition: {sorted(cond)}")


def _text(value: Mapping[str, str] | None, lang: str) -> str | None:
    if not value:
        return None
    return value.get(lang) or value.get("fr")


def _score(reqs: Sequence[_Req], score_model: Mapping[str, Any]) -> tuple[float, float]:
    """Return (Σ w·v, Σ w) over evaluated requirements; see the model's comments for the formula."""
    crit_w: Mapping[str, float] = score_model["criticality"]
    cat_w: Mapping[str, float] = score_model["category"]
    values: Mapping[str, float] = score_model["status"]
    num = den = 0.0
    for r in reqs:
        if r.status not in values:
            continue  # not evaluated (skipped by default): weighs nothing
        w = float(crit_w.get(r.criticality, crit_w.get("major", 1))) * float(cat_w.get(r.category, 1))
        num += w * float(values[r.status])
        den += w
    return num, den


def _pct(num: float, den: float) -> float | None:
    return round(100.0 * num / den, 1) if den > 0 else None


def _level_of(reqs: Sequence[_Req], levels: Sequence[Mapping[str, Any]]) -> int:
    reached = 0
    for entry in levels[1:]:
        if not evaluate(entry["when"], reqs):
            break
        reached = int(entry["level"])
    return reached


def compute_maturity(results: Mapping[str, Any] | Any, model: Mapping[str, Any], *, lang: str = "fr") -> dict[str, Any]:
    """Maturity per service socle and overall for a results/v1 document.

    Returns ``{"model": {"id", "version"}, "max_level": N, "services": {svc: {"level", "label",
    "labels", "description", "score", "counts"}}, "overall": {"level", "label", "labels", "score",
    "counts", "services_run"}}``. ``score`` is ``None`` where nothing was evaluated (not tested is
    not zero). ``counts`` are :func:`conformance.model.summarize` counts; ``counts["waived"]`` is the
    flag for scores that include waivers.
    """
    data: Mapping[str, Any] = results.to_json_dict() if hasattr(results, "to_json_dict") else results
    levels: list[Mapping[str, Any]] = sorted(model["levels"], key=lambda e: int(e["level"]))
    labels = {int(e["level"]): e["label"] for e in levels}
    descriptions = {int(e["level"]): e.get("description") for e in levels}

    by_service: dict[str, list[_Req]] = {}
    for req in data.get("requirements") or ():
        by_service.setdefault(str(req.get("service", "?")), []).append(_facts(req))

    services: dict[str, dict[str, Any]] = {}
    pooled_num = pooled_den = 0.0
    for svc, reqs in by_service.items():
        level = _level_of(reqs, levels)
        num, den = _score(reqs, model["score"])
        pooled_num += num
        pooled_den += den
        services[svc] = {
            "level": level,
            "label": _text(labels[level], lang),
            "labels": dict(labels[level]),
            "description": _text(descriptions[level], lang),
            "score": _pct(num, den),
            "counts": summarize(r.status for r in reqs),
        }

    overall_rule = model["overall"]
    if overall_rule["level"] == "min_of_all_services":
        pool = [s["level"] for s in services.values()]
    else:
        pool = [s["level"] for s in services.values() if s["level"] >= 1]
    overall_level = min(pool) if pool else 0
    if overall_rule["score"] == "mean_of_services":
        scores = [s["score"] for s in services.values() if s["score"] is not None]
        overall_score = round(sum(scores) / len(scores), 1) if scores else None
    else:
        overall_score = _pct(pooled_num, pooled_den)
    return {
        "model": {"id": model.get("id"), "version": model.get("version")},
        "max_level": int(levels[-1]["level"]),
        "services": services,
        "overall": {
            "level": overall_level,
            "label": _text(labels[overall_level], lang),
            "labels": dict(labels[overall_level]),
            "description": _text(descriptions[overall_level], lang),
            "score": overall_score,
            "counts": summarize(r.status for reqs in by_service.values() for r in reqs),
            "services_run": [svc for svc, s in services.items() if s["level"] >= 1],
        },
    }
