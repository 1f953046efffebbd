"""Client of the vendor's driver API (DESIGN.md contract), and the operator fallback.

The driver makes the vendor's software act against the bench's simulators; 202 answers are polled
until the action is done or its deadline passes.  Without a driver, an ``Operator`` asks a person to
do the same action in the software, then the scenario waits for the traffic.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

from conformance.parsing import InputError, parse_json
from conformance.transports.errors import TransportError
from conformance.transports.http import HttpClient


class DriverError(Exception):
    """The driver could not perform the action; ``rule`` is the finding rule for the step."""

    def __init__(self, message: str, *, unsupported: bool = False, evidence: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.unsupported = unsupported
        self.evidence = evidence


class DriverClient:
    def __init__(self, base: str, http: HttpClient) -> None:
        self.base = base.rstrip("/")
        self.http = http

    def capabilities(self, *, timeout: float = 10.0) -> dict[str, Any] | None:
        try:
            ex = self.http.request("GET", f"{self.base}/capabilities", name="driver capabilities", timeout=timeout)
            if ex.status != 200:
                return None
            caps = parse_json(ex.body, max_bytes=1024 * 1024)
        except (TransportError, InputError):
            return None
        return caps if isinstance(caps, dict) else None

    def run(
        self,
        action: str,
        params: dict[str, Any],
        services: dict[str, Any],
        *,
        scenario: str,
        timeout: float,
        cancelled: Callable[[], bool] = lambda: False,
        action_id: str | None = None,
    ) -> dict[str, Any]:
        aid = action_id or str(uuid.uuid4())
        body = {"id": aid, "action": action, "params": params, "services": services}
        deadline = time.monotonic() + timeout
        try:
            ex = self.http.request(
                "POST",
                f"{self.base}/actions",
                name=f"driver {action}",
                scenario=scenario,
                json_body=body,
                headers={"X-Segur-Bench-Action": aid},
                timeout=timeout,
            )
        except TransportError as exc:
            raise DriverError(f"driver {action}: {exc.message}") from None
        if ex.status == 422:
            # The vendor's own words say *what* is unsupported (an action, or a variant such as transport mhd);
            # a 422 whose body is not JSON still means "unsupported".
            try:
                err = self._json(ex.body, action, ex.evidence_id).get("error")
            except DriverError:
                err = None
            said = str(err.get("message"))[:200] if isinstance(err, dict) and err.get("message") else None
            why = f"vendor does not support action {action}" + (f": {said}" if said else "")
            raise DriverError(why, unsupported=True, evidence=ex.evidence_id)
        reply = self._json(ex.body, action, ex.evidence_id)
        if ex.status not in (200, 202):
            raise DriverError(f"driver {action}: HTTP {ex.status}", evidence=ex.evidence_id)
        while reply.get("status") == "accepted":
            if cancelled():
                raise DriverError(f"driver {action}: run interrupted")
            if time.monotonic() > deadline:
                raise DriverError(f"driver {action}: not done after {timeout:g} s", evidence=ex.evidence_id)
            time.sleep(0.25)
            try:
                ex = self.http.request(
                    "GET",
                    f"{self.base}/actions/{aid}",
                    name=f"driver {action} status",
                    scenario=scenario,
                    timeout=max(1.0, deadline - time.monotonic()),
                )
            except TransportError as exc:
                raise DriverError(f"driver {action}: {exc.message}") from None
            reply = self._json(ex.body, action, ex.evidence_id)
        status = reply.get("status")
        if status == "failed":
            err = reply.get("error") or {}
            raise DriverError(
                f"vendor reported {action} failed: {err.get('code', '?')} {err.get('message', '')}".strip(),
                evidence=ex.evidence_id,
            )
        if status != "done":
            raise DriverError(f"driver {action}: unexpected status {status!r}", evidence=ex.evidence_id)
        return {"id": aid, "status": "done", "result": reply.get("result") or {}, "evidence": ex.evidence_id}

    @staticmethod
    def _json(body: bytes, action: str, evidence: str | None) -> dict[str, Any]:
        try:
            reply = parse_json(body, max_bytes=1024 * 1024)
        except InputError as exc:
            raise DriverError(f"driver {action}: {exc.message}", evidence=evidence) from None
        if not isinstance(reply, dict):
            raise DriverError(f"driver {action}: answer is not a JSON object", evidence=evidence)
        return reply


class Operator:
    """Asks a person to act; ``prompt`` shows the text, ``confirm`` waits (bounded) for Enter."""

    def __init__(self, prompt: Callable[[str], None], confirm: Callable[[float], bool]) -> None:
        self.prompt = prompt
        self.confirm = confirm
