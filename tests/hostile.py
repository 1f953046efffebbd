"""Hostile vendors for tests: the reference vendor with its FHIR answers replaced by something bad.

An ASGI wrapper keeps discovery and the driver working (so the run reaches the FHIR steps) and
answers ``GET /fhir/...`` with the chosen hostile body; raw-socket servers cover what HTTP cannot
(accept and never answer).
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Awaitable, Callable
from typing import Any

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

XXE = (
    b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
    b'<Patient xmlns="http://hl7.org/fhir">&x;</Patient>'
)
BOMB = (
    b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    + b"".join(
        f'<!ENTITY lol{i} "{("&lol" + str(i - 1) + ";") * 10 if i > 1 else "&lol;" * 10}">'.encode()
        for i in range(1, 10)
    )
    + b"]><lolz>&lol9;</lolz>"
)

MODES: dict[str, tuple[str, bytes]] = {
    "malformed-json": ("application/fhir+json", b'{"resourceType": "Patient", "id": '),
    "xxe": ("application/fhir+xml", XXE),
    "entity-bomb": ("application/fhir+xml", BOMB),
    "not-json-html": ("text/html", b"<html><body>Internal error</body></html>"),
    "invalid-utf8": ("application/fhir+json", b'{"resourceType": "Patient", "id": "\xff\xfe"}'),
}


class HostileFhir:
    """Wraps an ASGI app; FHIR GETs get a hostile answer according to ``mode``."""

    def __init__(self, app: Any, mode: str, *, echo_header: str | None = None) -> None:
        self.app = app
        self.mode = mode
        self.echo_header = echo_header

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/fhir/") or scope["method"] != "GET":
            await self.app(scope, receive, send)
            return
        if self.mode == "hang":
            await asyncio.sleep(3600)
            return
        if self.mode == "echo-auth":
            headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
            body = (
                '{"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "security", '
                f'"diagnostics": "you sent {headers.get("authorization", "")}"}}]}}'
            ).encode()
            ctype = "application/fhir+json"
        elif self.mode == "huge":
            await send(
                {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/fhir+json")]}
            )
            chunk = b" " * (1024 * 1024)
            for _ in range(50):
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"{}", "more_body": False})
            return
        else:
            ctype, body = MODES[self.mode]
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", ctype.encode()), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})


class SilentServer:
    """Accepts TCP connections and never answers (until stopped)."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.conns: list[socket.socket] = []
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _loop(self) -> None:
        self.sock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
                self.conns.append(conn)
            except OSError:
                continue

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(timeout=2)
        for c in self.conns:
            c.close()
        self.sock.close()


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port
