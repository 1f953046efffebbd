"""Evidence store: every exchange of a run, redacted once, hashed, with a stable id.

Bodies are kept as text (UTF-8, invalid bytes replaced) and capped so that a hostile 50 MB answer
cannot blow up results.json; the cap is stated in the evidence itself.  The hash covers the canonical
JSON of the redacted evidence, so ``verify`` can detect any later alteration.
"""

from __future__ import annotations

import hashlib
import json
import shlex
import threading
from datetime import UTC, datetime
from typing import Any

from conformance.engine.redaction import Redactor
from conformance.model import Evidence

BODY_CAP = 256 * 1024


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def body_text(body: bytes | None, cap: int = BODY_CAP) -> dict[str, Any]:
    if not body:
        return {"body": "", "size": 0}
    text = body[:cap].decode("utf-8", errors="replace")
    out: dict[str, Any] = {"body": text, "size": len(body)}
    if len(body) > cap:
        out["truncated"] = True
    return out


def evidence_hash(ev: Evidence) -> str:
    data = ev.model_dump(mode="json", exclude={"sha256"})
    canon = json.dumps(data, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canon.encode("utf-8")).hexdigest()


def curl_line(method: str, url: str, headers: dict[str, str]) -> str:
    parts = ["curl", "-sS", "-X", method]
    for k, v in headers.items():
        parts += ["-H", f"{k}: {v}"]
    parts.append(url)
    return " ".join(shlex.quote(p) for p in parts)


class EvidenceStore:
    """Thread-safe collection of redacted, hashed evidence."""

    def __init__(self, redactor: Redactor | None = None) -> None:
        self.redactor = redactor or Redactor()
        self._items: list[Evidence] = []
        self._lock = threading.Lock()

    def _next_id(self) -> str:
        return f"ev-{len(self._items) + 1:04d}"

    def add(
        self,
        *,
        name: str,
        scenario: str | None,
        direction: str,
        protocol: str,
        started: str,
        duration_ms: float | None,
        request: dict[str, Any],
        response: dict[str, Any] | None,
        tls: dict[str, Any] | None = None,
        error: str | None = None,
    ) -> str:
        r = self.redactor
        req = self._redact_part(request)
        resp = self._redact_part(response) if response is not None else None
        curl = None
        if protocol.startswith("http") and direction == "outgoing" and "url" in req:
            curl = curl_line(req.get("method", "GET"), req["url"], req.get("headers", {}))
        with self._lock:
            ev = Evidence(
                id=self._next_id(),
                name=name,
                scenario=scenario,
                direction=direction,  # type: ignore[arg-type]
                protocol=protocol,
                started=started,
                duration_ms=round(duration_ms, 2) if duration_ms is not None else None,
                request=req,
                response=resp,
                tls=tls,
                error=r.text(error) if error else None,
                curl=curl,
            )
            ev.sha256 = evidence_hash(ev)
            self._items.append(ev)
            return ev.id

    def _redact_part(self, part: dict[str, Any]) -> dict[str, Any]:
        r = self.redactor
        out: dict[str, Any] = {}
        for k, v in part.items():
            if k == "headers" and isinstance(v, dict):
                out[k] = r.headers(v)
            elif isinstance(v, str):
                out[k] = r.text(v)
            else:
                out[k] = v
        return out

    def items(self) -> list[Evidence]:
        with self._lock:
            return list(self._items)
