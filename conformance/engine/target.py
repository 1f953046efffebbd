"""What the bench tests: endpoints, credentials, TLS and timeouts, from a URL or a TOML file.

With a bare URL the vendor's ``/.well-known/segur-bench`` document names its endpoints; without it
the bench assumes ``{URL}/fhir`` and ``{URL}/driver``.  Credentials are never written in the TOML
file itself: it names environment variables, and their values are registered as secrets to redact.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from conformance.parsing import InputError, parse_json
from conformance.transports.errors import TransportError
from conformance.transports.http import HttpClient, HttpConfig

ENDPOINT_KEYS = ("fhir", "driver", "smtp", "imap", "login", "mhd", "api")


class TargetError(Exception):
    """The target cannot be used at all (exit code 2)."""


@dataclass
class Target:
    base: str
    endpoints: dict[str, str] = field(default_factory=dict)
    product: dict[str, Any] = field(default_factory=dict)
    secrets: list[str] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)
    http: HttpConfig = field(default_factory=HttpConfig)
    await_timeout: float = 60.0
    operator: bool = False
    source: str = "url"

    def vars(self) -> dict[str, Any]:
        return {"base": self.base, **self.endpoints}

    def describe(self) -> dict[str, Any]:
        return {"base": self.base, "endpoints": dict(self.endpoints), "source": self.source}


def _env_secret(name: str, what: str) -> str:
    value = os.environ.get(name)
    if value is None:
        raise TargetError(f"{what}: environment variable {name} is not set")
    return value


def load_toml(path: Path) -> Target:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise TargetError(f"cannot read target file {path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise TargetError(f"{path}: invalid TOML: {exc}") from None
    section = data.get("target", data)
    base = str(section.get("base", section.get("url", ""))).rstrip("/")
    endpoints = {k: str(section[k]).rstrip("/") for k in ENDPOINT_KEYS if k in section}
    if not base and not endpoints:
        raise TargetError(f"{path}: [target] needs `base` or endpoint URLs ({', '.join(ENDPOINT_KEYS)})")
    t = Target(base=base or next(iter(endpoints.values())), endpoints=endpoints, source=str(path))
    auth = data.get("auth", {})
    if "bearer_env" in auth:
        token = _env_secret(auth["bearer_env"], "[auth] bearer_env")
        t.headers["Authorization"] = f"Bearer {token}"
        t.secrets.append(token)
    if "basic_user" in auth and "basic_password_env" in auth:
        import base64

        pwd = _env_secret(auth["basic_password_env"], "[auth] basic_password_env")
        cred = base64.b64encode(f"{auth['basic_user']}:{pwd}".encode()).decode()
        t.headers["Authorization"] = f"Basic {cred}"
        t.secrets += [pwd, cred]
    for env_name in auth.get("secret_envs", []):
        t.secrets.append(_env_secret(env_name, "[auth] secret_envs"))
    tls = data.get("tls", {})
    verify: bool | str = tls.get("verify", True)
    if "ca" in tls:
        verify = str(tls["ca"])
    cert = (str(tls["cert"]), str(tls["key"])) if "cert" in tls and "key" in tls else None
    timeouts = data.get("timeouts", {})
    t.http = HttpConfig(timeout=float(timeouts.get("http", 15)), verify=verify, cert=cert, headers=t.headers)
    t.await_timeout = float(timeouts.get("await", 60))
    t.product = dict(data.get("product", {}))
    t.operator = bool(section.get("operator", False))
    return t


def resolve(ref: str, *, timeout: float = 10.0) -> Target:
    """Build a Target from a URL or a TOML path; raise TargetError when it cannot be used."""
    if ref.startswith(("http://", "https://")):
        target = Target(base=ref.rstrip("/"), source="url")
    else:
        p = Path(ref)
        if not p.exists():
            raise TargetError(f"target {ref!r} is neither an http(s) URL nor an existing TOML file")
        target = load_toml(p)
    if target.endpoints.get("fhir") and (target.endpoints.get("driver") or target.operator):
        return target
    discover(target, timeout=timeout)
    return target


def discover(target: Target, *, timeout: float) -> None:
    """Read ``/.well-known/segur-bench``; a vendor that cannot be reached at all is a TargetError."""
    cfg = HttpConfig(timeout=timeout, verify=target.http.verify, cert=target.http.cert, headers=target.headers)
    client = HttpClient(cfg)
    url = f"{target.base}/.well-known/segur-bench"
    try:
        ex = client.request("GET", url, name="discovery")
    except TransportError as exc:
        raise TargetError(f"target unreachable: {exc.message}") from None
    finally:
        client.close()
    doc: dict[str, Any] = {}
    if ex.status == 200:
        try:
            parsed = parse_json(ex.body, max_bytes=1024 * 1024)
        except InputError as exc:
            raise TargetError(f"{url}: {exc.message}") from None
        if not isinstance(parsed, dict):
            raise TargetError(f"{url}: expected a JSON object of endpoints")
        doc = parsed
    for key in ENDPOINT_KEYS:
        if key in doc and isinstance(doc[key], (str, dict)) and key not in target.endpoints:
            target.endpoints[key] = doc[key].rstrip("/") if isinstance(doc[key], str) else doc[key]
    target.endpoints.setdefault("fhir", f"{target.base}/fhir")
    if not target.operator:
        target.endpoints.setdefault("driver", f"{target.base}/driver")
    for key in ("product", "version", "software_type"):
        if key in doc and isinstance(doc[key], str):
            target.product.setdefault(key, doc[key])
