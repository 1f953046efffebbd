"""Compare two runs requirement by requirement: what regressed, improved, appeared, disappeared.

Why: a CI pipeline must fail a release when conformance regresses, even when the run as a whole was
already non-conformant (a new failure hidden behind an old one). A regression is a requirement that
was ``passed``/``waived`` and is now ``failed``/``error``; anything else that changed is listed but does
not fail the diff.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

GOOD = frozenset({"passed", "waived"})
BAD = frozenset({"failed", "error"})
KINDS = ("regressed", "improved", "appeared", "disappeared", "changed")


def _index(results: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    return {str(r.get("id")): r for r in results.get("requirements") or () if isinstance(r, Mapping)}


def _entry(rid: str, old: Mapping[str, Any] | None, new: Mapping[str, Any] | None) -> dict[str, Any]:
    ref = new or old or {}
    return {
        "id": rid,
        "title": ref.get("title"),
        "service": ref.get("service"),
        "criticality": ref.get("criticality"),
        "old": old.get("status") if old else None,
        "new": new.get("status") if new else None,
    }


def _maturity(results: Mapping[str, Any]) -> dict[str, Any] | None:
    from conformance.report.maturity import MaturityModelError, compute_maturity, load_maturity_model

    try:
        m = compute_maturity(results, load_maturity_model())
    except (MaturityModelError, KeyError, TypeError, ValueError):
        return None
    return {"level": m["overall"]["level"], "score": m["overall"]["score"]}


def diff_results(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """Pure comparison of two results/v1 documents; ``regressions`` > 0 means exit 1."""
    a, b = _index(old), _index(new)
    out: dict[str, list[dict[str, Any]]] = {k: [] for k in KINDS}
    for rid, new_req in b.items():
        old_req = a.get(rid)
        if old_req is None:
            out["appeared"].append(_entry(rid, None, new_req))
            continue
        so, sn = old_req.get("status"), new_req.get("status")
        if so == sn:
            continue
        if so in GOOD and sn in BAD:
            kind = "regressed"
        elif so in BAD and sn in GOOD:
            kind = "improved"
        else:
            kind = "changed"
        out[kind].append(_entry(rid, old_req, new_req))
    for rid, old_req in a.items():
        if rid not in b:
            out["disappeared"].append(_entry(rid, old_req, None))
    notes = []
    po, pn = old.get("profile") or {}, new.get("profile") or {}
    if (po.get("id"), po.get("version")) != (pn.get("id"), pn.get("version")):
        notes.append(f"profiles differ: {po.get('id')} {po.get('version')} → {pn.get('id')} {pn.get('version')}")
    return {
        "schema": "segur-bench/diff/v1",
        "old": {"run_id": old.get("run_id"), "started": old.get("started"), "profile": po, "maturity": _maturity(old)},
        "new": {"run_id": new.get("run_id"), "started": new.get("started"), "profile": pn, "maturity": _maturity(new)},
        **out,
        "summary": {k: len(v) for k, v in out.items()},
        "regressions": len(out["regressed"]),
        "notes": notes,
    }


def render_json(d: Mapping[str, Any]) -> str:
    return json.dumps(d, ensure_ascii=False, indent=2) + "\n"


def _mat(m: Mapping[str, Any] | None) -> str:
    if not m:
        return "—"
    score = m.get("score")
    return f"{m['level']}" + (f" ({score:g}/100)" if score is not None else "")


def render_markdown(d: Mapping[str, Any]) -> str:
    """For a merge-request comment; vendor text escaped the same way as the Markdown report."""
    from conformance.report.render import md_escape

    s = d["summary"]
    lines = [
        "## segur-bench diff",
        "",
        f"Runs `{md_escape(d['old']['run_id'])}` → `{md_escape(d['new']['run_id'])}` · maturity "
        f"{_mat(d['old']['maturity'])} → {_mat(d['new']['maturity'])}",
        "",
        " · ".join(f"**{k}** {s[k]}" for k in KINDS),
        "",
    ]
    lines += [f"> {md_escape(n)}" for n in d["notes"]]
    for kind in KINDS:
        if not d[kind]:
            continue
        lines += ["", f"### {kind} ({len(d[kind])})", ""]
        lines += ["| requirement | service | old | new | title |", "|---|---|---|---|---|"]
        for e in d[kind]:
            lines.append(
                f"| {md_escape(e['id'])} | {md_escape(e['service'])} | {e['old'] or '—'} | {e['new'] or '—'} "
                f"| {md_escape(e['title'])} |"
            )
    verdict = "❌ regression" if d["regressions"] else "✅ no regression"
    lines += ["", f"**{verdict}**", ""]
    return "\n".join(lines)
