"""Renderers of a results/v1 document: HTML (auditors), Markdown (merge requests), JUnit XML (CI), JSON.

Every renderer takes the results *dict* (what ``results.json`` holds), so a report can be rebuilt later
from the file alone. Evidence and findings carry vendor-controlled text, so the HTML environment
autoescapes everything, the Markdown renderer neutralises HTML and table syntax, and the JUnit writer
strips characters XML cannot carry. The HTML report is self-contained (inline CSS and SVG, a
Content-Security-Policy that forbids any fetch) because auditors open it offline and archive it.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any, cast

import jinja2

from conformance.model import Status, summarize
from conformance.report.labels import labels_for
from conformance.report.maturity import compute_maturity, load_maturity_model

BODY_LIMIT = 20 * 1024
"""Characters of a request/response body shown in the HTML report (the full body stays in results.json)."""

OTHER_LIMIT = 2 * 1024
MD_MAX_ROWS = 200
MD_CELL_LIMIT = 200

FILENAMES = {"json": "results.json", "html": "report.html", "junit": "junit.xml", "md": "report.md"}

_STATUSES: tuple[Status, ...] = ("passed", "failed", "error", "skipped", "waived")
_SECRETISH = re.compile(r"token|passw|secret|key|authori[sz]ation|cookie|credential|bearer", re.I)
_ANCHOR_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")
_XML_ILLEGAL = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_LEVEL_COLOURS = ("#9aa0a6", "#d93025", "#f29900", "#e3c000", "#7cb342", "#188038")

# Keys the engine's evidence store writes (engine/evidence.py: body text, original size, capture cap);
# anything else a transport records is shown as key/value.
_REQ_KNOWN = {"method", "url", "headers", "body", "size", "truncated"}
_RESP_KNOWN = {"status", "status_code", "reason", "headers", "body", "size", "truncated"}


def _as_dict(results: Mapping[str, Any] | Any) -> Mapping[str, Any]:
    """Accept a RunResult too: callers in the engine hold the model, the CLI holds the file."""
    if hasattr(results, "to_json_dict"):
        return cast(Mapping[str, Any], results.to_json_dict())
    return cast(Mapping[str, Any], results)


# --------------------------------------------------------------------------------------------------
# Jinja environments


def _templates_dir() -> Path:
    return Path(__file__).resolve().parent.parent / "reports"


@lru_cache(maxsize=1)
def _html_env() -> jinja2.Environment:
    # autoescape=True unconditionally (not select_autoescape): evidence is vendor-controlled text.
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(_templates_dir()),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return env


@lru_cache(maxsize=1)
def _md_env() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(_templates_dir()),
        autoescape=False,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["md"] = md_escape
    env.filters["mdcode"] = md_code
    return env


def md_escape(value: Any, limit: int = MD_CELL_LIMIT) -> str:
    """Make vendor text inert inside a Markdown table cell of a merge-request comment.

    GitLab and GitHub render raw HTML and Markdown links in comments, so ``<``/``>``/``&`` become
    entities, Markdown punctuation is backslash-escaped, and newlines collapse (a newline would end
    the table row).
    """
    text = "" if value is None else str(value)
    text = " ".join(text.split())
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return re.sub(r"([\\`*_\[\]|#~!])", r"\\\1", text)


def md_code(value: Any, limit: int = 80) -> str:
    """Vendor text for a Markdown code span in a table: no HTML is rendered there, but a backtick
    would close the span and a pipe would split the cell (GFM unescapes ``\\|`` inside code spans)."""
    text = " ".join(("" if value is None else str(value)).split())
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return "`" + text.replace("`", "'").replace("|", "\\|") + "`"


# --------------------------------------------------------------------------------------------------
# View model shared by the HTML and Markdown templates


def _anchors(ids: Iterable[str], prefix: str) -> dict[str, str]:
    """Stable, unique, HTML-safe anchors for ids that may contain '/', spaces or worse."""
    out: dict[str, str] = {}
    used: set[str] = set()
    for rid in ids:
        if rid in out:
            continue
        base = prefix + (_ANCHOR_UNSAFE.sub("-", rid).strip("-") or "x")
        anchor, n = base, 1
        while anchor in used:
            n += 1
            anchor = f"{base}-{n}"
        used.add(anchor)
        out[rid] = anchor
    return out


def _clip(text: str, limit: int) -> tuple[str, int | None]:
    """Return (shown text, original length when truncated)."""
    if len(text) <= limit:
        return text, None
    return text[:limit], len(text)


def _text_of(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, indent=2, default=str)


def _header_pairs(headers: Any) -> list[tuple[str, str]]:
    if isinstance(headers, Mapping):
        out: list[tuple[str, str]] = []
        for k, v in headers.items():
            if isinstance(v, list):
                out.extend((str(k), str(x)) for x in v)
            else:
                out.append((str(k), str(v)))
        return out
    if isinstance(headers, list):
        return [(str(h[0]), str(h[1])) for h in headers if isinstance(h, list | tuple) and len(h) == 2]
    return []


def _message_view(part: Mapping[str, Any] | None, known: set[str]) -> dict[str, Any] | None:
    """Request or response of an exchange, whatever the protocol: known HTTP keys, the rest as-is."""
    if not part:
        return None
    body = part.get("body")
    shown, total = _clip(_text_of(body), BODY_LIMIT) if body not in (None, "") else ("", None)
    other = []
    for key, value in part.items():
        if key in known:
            continue
        text, cut = _clip(_text_of(value), OTHER_LIMIT)
        other.append({"key": str(key), "value": text + ("…" if cut else "")})
    status = part.get("status", part.get("status_code"))
    return {
        "method": part.get("method"),
        "url": part.get("url"),
        "status": status,
        "reason": part.get("reason"),
        "headers": "\n".join(f"{k}: {v}" for k, v in _header_pairs(part.get("headers"))),
        "body": shown,
        "body_total": total,
        "size": part.get("size"),
        "capture_truncated": bool(part.get("truncated")),
        "other": other,
    }


def _flat(prefix: str, value: Any, out: list[tuple[str, str]]) -> None:
    """Flatten target/product dicts for display, dropping anything that looks like a secret.

    Redaction happens in the engine; this is defence in depth for a hand-written target file.
    """
    if isinstance(value, Mapping):
        for k, v in value.items():
            key = f"{prefix}.{k}" if prefix else str(k)
            if _SECRETISH.search(str(k)):
                continue
            _flat(key, v, out)
    elif isinstance(value, list):
        out.append((prefix, ", ".join(str(v) for v in value)))
    elif value is not None:
        out.append((prefix, str(value)))


def _chart(maturity: Mapping[str, Any], labels: Mapping[str, Any]) -> dict[str, Any]:
    """Geometry of the inline SVG bar chart: one row per service, level bar and score bar."""
    max_level = max(int(maturity["max_level"]), 1)
    label_w, bar_w, row_h, top = 120, 360, 44, 28
    rows = []
    for i, (svc, data) in enumerate(maturity["services"].items()):
        y = top + i * row_h
        level = int(data["level"])
        score = data["score"]
        rows.append(
            {
                "service": svc,
                "y": y,
                "level": level,
                "level_w": round(bar_w * level / max_level, 1),
                "score_w": round(bar_w * (score or 0) / 100, 1),
                "colour": _LEVEL_COLOURS[min(level, len(_LEVEL_COLOURS) - 1)],
                "text": f"{level}/{max_level} · " + (f"{score:g}/100" if score is not None else labels["nothing"]),
                "title": f"{svc}: {labels['level']} {level} — {data['label']}",
            }
        )
    ticks = [{"x": label_w + round(bar_w * n / max_level, 1), "n": n} for n in range(max_level + 1)]
    return {
        "width": label_w + bar_w + 150,
        "height": top + max(len(rows), 1) * row_h + 6,
        "label_w": label_w,
        "bar_w": bar_w,
        "rows": rows,
        "ticks": ticks,
        "top": top,
    }


def build_context(
    results: Mapping[str, Any] | Any, *, lang: str = "fr", maturity_model: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Everything the templates need, computed once in Python (templates stay logic-light and fast)."""
    data = _as_dict(results)
    labels = labels_for(lang)
    model = maturity_model if maturity_model is not None else load_maturity_model()
    maturity = compute_maturity(data, model, lang=lang)

    evidence_list: list[Mapping[str, Any]] = list(data.get("evidence") or ())
    ev_anchor = _anchors((str(e.get("id")) for e in evidence_list), "ev-")
    requirements: list[Mapping[str, Any]] = list(data.get("requirements") or ())
    req_anchor = _anchors((str(r.get("id")) for r in requirements), "req-")
    ev_by_id = {str(e.get("id")): e for e in evidence_list}
    used_by: dict[str, list[dict[str, str]]] = {}

    def link(eid: str) -> dict[str, Any]:
        ev = ev_by_id.get(eid)
        if ev is None:
            return {"id": eid, "anchor": None, "label": eid}
        req = ev.get("request") or {}
        label = str(ev.get("name") or eid)
        if req.get("method") or req.get("url"):
            label += f" ({req.get('method') or ''} {req.get('url') or ''})".replace("( ", "(")
        return {"id": eid, "anchor": ev_anchor[eid], "label": label}

    reqs_view = []
    for req in requirements:
        rid = str(req.get("id"))
        status = req.get("status", "error")
        checks = []
        seen_ev: set[str] = set()
        for chk in req.get("checks") or ():
            ev_ids = [str(x) for x in chk.get("evidence") or ()]
            findings = []
            for f in chk.get("findings") or ():
                f_ev = [str(x) for x in f.get("evidence") or ()]
                findings.append(
                    {
                        "rule": f.get("rule"),
                        "severity": f.get("severity"),
                        "severity_label": labels["severities"].get(f.get("severity"), f.get("severity")),
                        "message": f.get("message"),
                        "location": f.get("location"),
                        "evidence": [link(e) for e in f_ev],
                    }
                )
                ev_ids.extend(e for e in f_ev if e not in ev_ids)
            for eid in ev_ids:
                if eid not in seen_ev:
                    seen_ev.add(eid)
                    used_by.setdefault(eid, []).append({"id": rid, "anchor": req_anchor[rid]})
            checks.append(
                {
                    "scenario": chk.get("scenario"),
                    "step": chk.get("step"),
                    "check": chk.get("check"),
                    "status": chk.get("status"),
                    "status_label": labels["statuses"].get(chk.get("status"), chk.get("status")),
                    "reason": chk.get("reason"),
                    "findings": findings,
                    "evidence": [link(e) for e in ev_ids],
                }
            )
        first_findings = [f for c in checks for f in c["findings"]][:3]
        reqs_view.append(
            {
                "id": rid,
                "anchor": req_anchor[rid],
                "title": req.get("title"),
                "service": req.get("service"),
                "status": status,
                "status_label": labels["statuses"].get(status, status),
                "criticality": req.get("criticality"),
                "criticality_label": labels["criticalities"].get(req.get("criticality"), req.get("criticality")),
                "category_label": labels["categories"].get(req.get("category"), req.get("category")),
                "wave": req.get("wave"),
                "reason": req.get("reason"),
                "note": req.get("note"),
                "open": status in ("failed", "error"),
                "waiver": req.get("waiver") or None,
                "checks": checks,
                "first_findings": first_findings,
            }
        )
    # Failed and errored first (stable: profile order within each group), so an auditor sees them first.
    reqs_view.sort(key=lambda r: 0 if r["open"] else 1)

    evidence_view = []
    for ev in evidence_list:
        eid = str(ev.get("id"))
        tls: list[tuple[str, str]] = []
        _flat("", ev.get("tls") or {}, tls)
        evidence_view.append(
            {
                "id": eid,
                "anchor": ev_anchor[eid],
                "name": ev.get("name"),
                "scenario": ev.get("scenario"),
                "direction": ev.get("direction"),
                "direction_label": labels["directions"].get(ev.get("direction"), ev.get("direction")),
                "protocol": ev.get("protocol"),
                "started": ev.get("started"),
                "duration_ms": ev.get("duration_ms"),
                "request": _message_view(ev.get("request"), _REQ_KNOWN),
                "response": _message_view(ev.get("response"), _RESP_KNOWN),
                "tls": tls,
                "error": ev.get("error"),
                "curl": ev.get("curl"),
                "sha256": ev.get("sha256"),
                "used_by": used_by.get(eid, []),
            }
        )

    services_counts = [(svc, m["counts"]) for svc, m in maturity["services"].items()]
    total_counts = summarize(cast(Status, r.get("status")) for r in requirements if r.get("status") in _STATUSES)
    target: list[tuple[str, str]] = []
    _flat("", data.get("target") or {}, target)
    product_data = data.get("product") or {}
    product: list[tuple[str, str]] = []
    _flat("", {k: v for k, v in product_data.items() if k not in ("product", "name", "version")}, product)
    product_name = " ".join(
        str(x) for x in (product_data.get("product") or product_data.get("name"), product_data.get("version")) if x
    )
    tool = data.get("tool") or {}
    return {
        "lang": lang,
        "L": labels,
        "complete": bool(data.get("complete")),
        "interrupted": bool(data.get("interrupted")) or not data.get("complete"),
        "run_id": data.get("run_id"),
        "profile": data.get("profile") or {},
        "tool": tool,
        "tool_line": " ".join(str(tool[k]) for k in ("name", "version") if tool.get(k)) or "segur-bench",
        "tool_items": [(str(k), str(v)) for k, v in tool.items()],
        "target": target,
        "product": product,
        "product_name": product_name,
        "started": data.get("started"),
        "finished": data.get("finished"),
        "maturity": maturity,
        "levels": sorted(model["levels"], key=lambda e: int(e["level"])),
        "chart": _chart(maturity, labels),
        "services_counts": services_counts,
        "total_counts": total_counts,
        "statuses": list(_STATUSES),
        "requirements": reqs_view,
        "non_passed": [r for r in reqs_view if r["status"] != "passed"],
        "notes": [str(n) for n in data.get("notes") or ()],
        "requirement_notes": [r for r in reqs_view if r["note"]],
        "evidence": evidence_view,
        "waivers": [
            {
                **w,
                "anchor": req_anchor.get(str(w.get("id"))),
                "failing": w.get("status") in ("expired", "unused"),
                "status_label": labels["waiver_statuses"].get(w.get("status"), w.get("status")),
            }
            for w in data.get("waivers") or ()
            if isinstance(w, Mapping)
        ],
        "signature": data.get("signature") if isinstance(data.get("signature"), Mapping) else None,
    }


# --------------------------------------------------------------------------------------------------
# Renderers


def render_html(
    results: Mapping[str, Any] | Any, *, lang: str = "fr", maturity_model: Mapping[str, Any] | None = None
) -> str:
    """Self-contained HTML report: maturity first, then counts, requirements (drill-down), evidence."""
    ctx = build_context(results, lang=lang, maturity_model=maturity_model)
    return _html_env().get_template("report.html.j2").render(ctx)


def render_markdown(
    results: Mapping[str, Any] | Any, *, lang: str = "fr", maturity_model: Mapping[str, Any] | None = None
) -> str:
    """Short Markdown summary for a merge-request comment: maturity, counts, non-passed requirements."""
    ctx = build_context(results, lang=lang, maturity_model=maturity_model)
    ctx["md_rows"] = ctx["non_passed"][:MD_MAX_ROWS]
    ctx["md_more"] = max(0, len(ctx["non_passed"]) - MD_MAX_ROWS)
    return _md_env().get_template("report.md.j2").render(ctx)


def _x(value: Any) -> str:
    """Text XML 1.0 can carry: vendor strings may hold NULs or other control characters."""
    return _XML_ILLEGAL.sub("\ufffd", "" if value is None else str(value))


def _finding_line(f: Mapping[str, Any]) -> str:
    loc = f" @ {f['location']}" if f.get("location") else ""
    ev = f" (evidence: {', '.join(map(str, f['evidence']))})" if f.get("evidence") else ""
    return f"[{f.get('severity')}] {f.get('rule')}{loc}: {f.get('message')}{ev}"


def render_junit(results: Mapping[str, Any] | Any) -> str:
    """JUnit XML for CI dashboards: one testsuite per service, one testcase per requirement.

    failed → <failure> listing the findings, error → <error>, skipped and waived → <skipped> (a waiver
    is not a pass a dashboard should count green without a trace; the message says "waived").
    """
    data = _as_dict(results)
    durations = {str(e.get("id")): float(e.get("duration_ms") or 0) / 1000.0 for e in data.get("evidence") or ()}
    profile = data.get("profile") or {}
    tool = data.get("tool") or {}
    props: list[tuple[str, str]] = [(f"profile.{k}", str(v)) for k, v in profile.items()]
    props += [(f"tool.{k}", str(v)) for k, v in tool.items()]
    props += [
        ("run_id", str(data.get("run_id"))),
        ("complete", str(bool(data.get("complete"))).lower()),
        ("interrupted", str(bool(data.get("interrupted"))).lower()),
    ]
    target: list[tuple[str, str]] = []
    _flat("", data.get("target") or {}, target)
    props += [(f"target.{k}", v) for k, v in target]

    by_service: dict[str, list[Mapping[str, Any]]] = {}
    for req in data.get("requirements") or ():
        by_service.setdefault(str(req.get("service", "?")), []).append(req)

    root = ET.Element("testsuites", {"name": _x(f"segur-bench {profile.get('id', '')}".strip())})
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0, "time": 0.0}
    for svc, reqs in by_service.items():
        suite = ET.SubElement(root, "testsuite", {"name": _x(f"{profile.get('id', 'segur-bench')}.{svc}")})
        if data.get("started"):
            suite.set("timestamp", _x(data.get("started")))
        properties = ET.SubElement(suite, "properties")
        for name, value in props:
            ET.SubElement(properties, "property", {"name": _x(name), "value": _x(value)})
        counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0, "time": 0.0}
        for req in reqs:
            status = req.get("status")
            checks = list(req.get("checks") or ())
            ev_ids = {str(e) for c in checks for e in c.get("evidence") or ()}
            ev_ids |= {str(e) for c in checks for f in c.get("findings") or () for e in f.get("evidence") or ()}
            elapsed = sum(durations.get(e, 0.0) for e in ev_ids)
            case = ET.SubElement(
                suite,
                "testcase",
                {
                    "classname": _x(svc),
                    "name": _x(f"{req.get('id')} {req.get('title') or ''}".strip()),
                    "time": f"{elapsed:.3f}",
                },
            )
            counts["tests"] += 1
            counts["time"] += elapsed
            findings = [f for c in checks for f in c.get("findings") or ()]
            if status == "failed":
                counts["failures"] += 1
                first = next((f for f in findings if f.get("severity") == "error"), findings[0] if findings else None)
                lines = [_finding_line(f) for f in findings]
                lines += [
                    f"{c.get('scenario')}/{c.get('step')}/{c.get('check')}: {c.get('reason')}"
                    for c in checks
                    if c.get("reason")
                ]
                failure = ET.SubElement(
                    case,
                    "failure",
                    {
                        "message": _x((first or {}).get("message") or req.get("reason") or "failed")[:500],
                        "type": _x((first or {}).get("rule") or "failed"),
                    },
                )
                failure.text = _x("\n".join(lines) or req.get("reason") or "failed")
            elif status == "error":
                counts["errors"] += 1
                reasons = [str(req.get("reason"))] if req.get("reason") else []
                reasons += [
                    f"{c.get('scenario')}/{c.get('step')}/{c.get('check')}: {c.get('reason')}"
                    for c in checks
                    if c.get("status") == "error" and c.get("reason")
                ]
                err = ET.SubElement(
                    case, "error", {"message": _x(reasons[0] if reasons else "error")[:500], "type": "error"}
                )
                err.text = _x("\n".join(reasons + [_finding_line(f) for f in findings]))
            elif status in ("skipped", "waived"):
                counts["skipped"] += 1
                reason = req.get("reason") or ""
                msg = f"waived: {reason}" if status == "waived" else (reason or "not tested")
                ET.SubElement(case, "skipped", {"message": _x(msg.strip().rstrip(":"))[:500]})
            if req.get("note"):
                ET.SubElement(case, "system-out").text = _x(req.get("note"))
        for key in ("tests", "failures", "errors", "skipped"):
            suite.set(key, str(counts[key]))
            totals[key] += counts[key]
        suite.set("time", f"{counts['time']:.3f}")
        totals["time"] += counts["time"]
    waivers = [w for w in data.get("waivers") or () if isinstance(w, Mapping)]
    if waivers:
        # Expired/unused waivers fail the run (exit 1): a dashboard must show why, as failures.
        suite = ET.SubElement(root, "testsuite", {"name": _x(f"{profile.get('id', 'segur-bench')}.waivers")})
        bad = 0
        for w in waivers:
            case = ET.SubElement(
                suite, "testcase", {"classname": "waivers", "name": _x(f"waiver {w.get('id')}"), "time": "0.000"}
            )
            if w.get("status") in ("expired", "unused"):
                bad += 1
                ET.SubElement(
                    case,
                    "failure",
                    {"message": _x(f"waiver {w.get('status')}: {w.get('reason') or ''}")[:500], "type": "waiver"},
                ).text = _x(f"{w.get('justification')} (expires {w.get('expires')})")
        suite.set("tests", str(len(waivers)))
        suite.set("failures", str(bad))
        suite.set("errors", "0")
        suite.set("skipped", "0")
        suite.set("time", "0.000")
        totals["tests"] += len(waivers)
        totals["failures"] += bad
    for key in ("tests", "failures", "errors", "skipped"):
        root.set(key, str(int(totals[key])))
    root.set("time", f"{totals['time']:.3f}")
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def render_json(results: Mapping[str, Any] | Any) -> str:
    """The results/v1 document itself, pretty-printed, UTF-8 (French text stays readable)."""
    return json.dumps(_as_dict(results), ensure_ascii=False, indent=2) + "\n"


def render_pdf(
    results: Mapping[str, Any] | Any,
    out: Path | None = None,
    *,
    lang: str = "fr",
    maturity_model: Mapping[str, Any] | None = None,
) -> bytes:
    """PDF of the HTML report through the optional ``weasyprint`` extra; written to ``out`` if given.

    Raises ImportError (with the install command) when the extra is missing, so callers can turn it
    into a one-line exit 2.
    """
    try:
        from weasyprint import HTML  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        raise ImportError("PDF output needs the optional 'pdf' extra: pip install 'segur-bench[pdf]'") from None
    except OSError as exc:  # weasyprint installed but the system's Pango/HarfBuzz libraries are missing
        raise ImportError(f"PDF output needs Pango (e.g. Debian's libpango-1.0-0): {exc}") from None
    html = render_html(_for_print(results), lang=lang, maturity_model=maturity_model)

    def _no_fetch(url: str, *args: Any, **kwargs: Any) -> Any:
        # The report is self-contained; anything that tries to fetch is refused, never resolved.
        raise ValueError(f"refused to fetch {url!r} while rendering a report")

    pdf = cast(bytes, HTML(string=html, url_fetcher=_no_fetch).write_pdf())
    if out is not None:
        _atomic_write(Path(out), pdf)
    return pdf


def _for_print(results: Mapping[str, Any] | Any) -> dict[str, Any]:
    """A copy without evidence bodies: PDF layout engines crawl on preformatted SOAP/MTOM/base64
    bodies (minutes for a demo run). The PDF keeps every exchange's method, URL, status, timing and
    hash; the full bodies stay in results.json and the HTML report."""
    data = dict(_as_dict(results))
    evidence = []
    for ev in data.get("evidence") or []:
        ev = dict(ev)
        for part in ("request", "response"):
            msg = ev.get(part)
            if isinstance(msg, dict) and isinstance(msg.get("body"), str) and msg["body"]:
                ev[part] = {**msg, "body": f"({len(msg['body'])} characters: see results.json or report.html)"}
        evidence.append(ev)
    data["evidence"] = evidence
    return data


def _atomic_write(path: Path, content: str | bytes) -> None:
    """Write through a temporary file and rename: a reader (or a crash) never sees half a report.

    The temporary file is created with mode 0666 minus the umask (not mkstemp's 0600) so reports get
    the permissions users expect from any other file they write.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(content.encode("utf-8") if isinstance(content, str) else content)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_reports(
    results: Mapping[str, Any] | Any,
    out_dir: Path,
    formats: Sequence[str] = ("json", "html", "junit", "md"),
    *,
    lang: str = "fr",
    maturity_model: Mapping[str, Any] | None = None,
) -> dict[str, Path]:
    """Write the requested formats into ``out_dir``; returns {format: path}.

    File names are fixed (results.json, report.html, junit.xml, report.md, report.pdf) so CI jobs and
    auditors find them without configuration.
    """
    unknown = [f for f in formats if f not in FILENAMES and f != "pdf"]
    if unknown:
        raise ValueError(f"unknown report format(s): {', '.join(unknown)} (expected json, html, junit, md, pdf)")
    data = _as_dict(results)
    model = maturity_model if maturity_model is not None else load_maturity_model()
    out_dir = Path(out_dir)
    written: dict[str, Path] = {}
    for fmt in formats:
        content: str | bytes
        if fmt == "json":
            content = render_json(data)
        elif fmt == "html":
            content = render_html(data, lang=lang, maturity_model=model)
        elif fmt == "junit":
            content = render_junit(data)
        elif fmt == "md":
            content = render_markdown(data, lang=lang, maturity_model=model)
        else:
            content = render_pdf(data, lang=lang, maturity_model=model)
        path = out_dir / FILENAMES.get(fmt, "report.pdf")
        _atomic_write(path, content)
        written[fmt] = path
    return written
