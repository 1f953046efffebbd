"""Traffic received by the bench's simulators, handed to the scenario step that waits for it.

A simulator records each request it receives (and what it answered) as a ``Received`` item; a step
of type ``await`` blocks on ``TrafficLog.wait`` with a predicate and a deadline.  Matching by
predicate lets a step correlate by action id header, SOAP content or patient traits.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Received:
    """One request received by a simulator, with the answer it gave."""

    service: str
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    received_at: float
    client: str | None = None
    query: str = ""
    response_status: int | None = None
    response_headers: dict[str, str] = field(default_factory=dict)
    response_body: bytes = b""
    duration_ms: float | None = None
    # What the simulator understood of the request (operation, traits, identity returned...).
    facts: dict[str, Any] = field(default_factory=dict)
    seq: int = 0

    def header(self, name: str) -> str | None:
        low = name.lower()
        for k, v in self.headers.items():
            if k.lower() == low:
                return v
        return None


class TrafficLog:
    """Thread-safe list of received requests with blocking, deadline-bound waits."""

    def __init__(self) -> None:
        self._items: list[Received] = []
        self._cond = threading.Condition()
        self._seq = 0

    def add(self, item: Received) -> None:
        with self._cond:
            self._seq += 1
            item.seq = self._seq
            self._items.append(item)
            self._cond.notify_all()

    def items(self, service: str | None = None) -> list[Received]:
        with self._cond:
            return [i for i in self._items if service is None or i.service == service]

    def wait(
        self,
        predicate: Callable[[Received], bool],
        *,
        timeout: float,
        after_seq: int = 0,
    ) -> Received | None:
        """First item after ``after_seq`` matching ``predicate``, or None once ``timeout`` expires."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for item in self._items:
                    if item.seq > after_seq and predicate(item):
                        return item
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._cond.wait(remaining)

    @property
    def last_seq(self) -> int:
        with self._cond:
            return self._seq
