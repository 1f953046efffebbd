"""HTTP client used to probe vendor endpoints: deadlines on by default, size caps, evidence.

requests is wrapped so that the rest of the bench sees only ``HttpExchange`` and the transport
exception tree.  Bodies are streamed and cut at ``max_bytes`` and at an overall deadline, so a server
that trickles bytes or sends 50 MB cannot hang or exhaust the run.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import requests
from requests.structures import CaseInsensitiveDict

from conformance.engine.evidence import EvidenceStore, body_text, now_iso
from conformance.transports.errors import ConnectFailed, ProtocolViolation, Timeout, TLSFailed, TooLarge, TransportError

DEFAULT_TIMEOUT = 15.0
DEFAULT_MAX_BYTES = 10 * 1024 * 1024
USER_AGENT = "segur-bench"


@dataclass
class HttpExchange:
    method: str
    url: str
    status: int
    headers: Mapping[str, str]
    body: bytes
    elapsed_ms: float
    request_headers: dict[str, str] = field(default_factory=dict)
    evidence_id: str | None = None
    tls: dict[str, Any] | None = None

    def as_vars(self) -> dict[str, Any]:
        """What a scenario can reference after ``save_as``."""
        from conformance.parsing import InputError, parse_json

        try:
            js = parse_json(self.body) if self.body else None
        except InputError:
            js = None
        return {"status": self.status, "headers": dict(self.headers), "json": js, "url": self.url}


@dataclass
class HttpConfig:
    timeout: float = DEFAULT_TIMEOUT
    max_bytes: int = DEFAULT_MAX_BYTES
    verify: bool | str = True
    cert: tuple[str, str] | None = None
    headers: dict[str, str] = field(default_factory=dict)


def _tls_facts(resp: requests.Response) -> dict[str, Any] | None:
    try:
        conn = getattr(resp.raw, "_connection", None) or getattr(resp.raw, "connection", None)
        sock = getattr(conn, "sock", None)
        if isinstance(sock, ssl.SSLSocket):
            cipher = sock.cipher()
            return {"version": sock.version(), "cipher": cipher[0] if cipher else None}
    except Exception:
        return None
    return None


class HttpClient:
    """One session per run; thread-safe enough for concurrent GETs (requests pools connections)."""

    def __init__(self, config: HttpConfig | None = None, evidence: EvidenceStore | None = None) -> None:
        self.config = config or HttpConfig()
        self.evidence = evidence or EvidenceStore()
        self.session = requests.Session()
        self.session.trust_env = False  # never route through a proxy the user did not name
        self.session.headers.update({"User-Agent": USER_AGENT, **self.config.headers})

    def request(
        self,
        method: str,
        url: str,
        *,
        name: str,
        scenario: str | None = None,
        headers: dict[str, str] | None = None,
        json_body: Any = None,
        data: bytes | None = None,
        timeout: float | None = None,
    ) -> HttpExchange:
        timeout = timeout or self.config.timeout
        started = now_iso()
        t0 = time.monotonic()
        sent_headers: dict[str, str] = {k: str(v) for k, v in self.session.headers.items()}
        sent_headers.update(headers or {})
        req_record: dict[str, Any] = {"method": method, "url": url, "headers": sent_headers}
        if json_body is not None:
            import json

            data = json.dumps(json_body).encode("utf-8")
            sent_headers["Content-Type"] = "application/json"
        if data is not None:
            req_record.update(body_text(data))
        try:
            resp = self.session.request(
                method,
                url,
                headers=sent_headers,
                data=data,
                timeout=(min(timeout, 10.0), timeout),
                stream=True,
                allow_redirects=False,
                verify=self.config.verify,
                cert=self.config.cert,
            )
            tls = _tls_facts(resp)
            body = self._read_capped(resp, t0, timeout)
        except TransportError as exc:
            self._record_error(name, scenario, started, t0, req_record, exc)
            raise
        except Exception as exc:
            err = _translate(exc, url, timeout)
            self._record_error(name, scenario, started, t0, req_record, err)
            raise err from None
        elapsed = (time.monotonic() - t0) * 1000
        resp_headers = CaseInsensitiveDict(resp.headers)
        ev_id = self.evidence.add(
            name=name,
            scenario=scenario,
            direction="outgoing",
            protocol="http",
            started=started,
            duration_ms=elapsed,
            request=req_record,
            response={"status": resp.status_code, "headers": dict(resp.headers), **body_text(body)},
            tls=tls,
        )
        return HttpExchange(method, url, resp.status_code, resp_headers, body, elapsed, sent_headers, ev_id, tls)

    def _read_capped(self, resp: requests.Response, t0: float, timeout: float) -> bytes:
        chunks: list[bytes] = []
        total = 0
        try:
            for chunk in resp.iter_content(64 * 1024):
                total += len(chunk)
                if total > self.config.max_bytes:
                    raise TooLarge(f"response body exceeds {self.config.max_bytes} bytes; reading stopped")
                if time.monotonic() - t0 > timeout:
                    raise Timeout(f"response not complete after {timeout:g} s; reading stopped")
                chunks.append(chunk)
        finally:
            resp.close()
        return b"".join(chunks)

    def _record_error(
        self, name: str, scenario: str | None, started: str, t0: float, req: dict[str, Any], exc: TransportError
    ) -> None:
        self.evidence.add(
            name=name,
            scenario=scenario,
            direction="outgoing",
            protocol="http",
            started=started,
            duration_ms=(time.monotonic() - t0) * 1000,
            request=req,
            response=None,
            error=f"{exc.rule}: {exc.message}",
        )

    def close(self) -> None:
        self.session.close()


def _translate(exc: Exception, url: str, timeout: float) -> TransportError:
    if isinstance(exc, requests.exceptions.SSLError):
        return TLSFailed(f"TLS failure with {url}: {_short(exc)}")
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return Timeout(f"connection to {url} timed out")
    if isinstance(exc, requests.exceptions.Timeout):
        return Timeout(f"no answer from {url} within {timeout:g} s")
    if isinstance(exc, requests.exceptions.ConnectionError):
        text = _short(exc)
        if "Read timed out" in text:
            return Timeout(f"no answer from {url} within {timeout:g} s")
        if "CERTIFICATE" in text.upper() or "SSL" in text.upper():
            return TLSFailed(f"TLS failure with {url}: {text}")
        if "refused" in text.lower():
            return ConnectFailed(f"connection refused by {url}")
        return ConnectFailed(f"cannot connect to {url}: {text}")
    if isinstance(exc, (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema, ValueError)):
        return ProtocolViolation(f"invalid URL {url!r}: {_short(exc)}")
    if isinstance(exc, requests.exceptions.RequestException):
        return ProtocolViolation(f"HTTP error with {url}: {_short(exc)}")
    return TransportError(f"{type(exc).__name__} with {url}: {_short(exc)}")


def _short(exc: BaseException) -> str:
    text = str(exc).replace("\n", " ")
    # requests nests urllib3 reprs; keep the innermost reason, one line.
    for marker in ("Caused by ", "(Caused by "):
        if marker in text:
            text = text.split(marker, 1)[1]
    return text[:300]
