"""Redaction of secrets before anything is stored, hashed, logged or rendered.

Secrets are known values (tokens and passwords from the target configuration) plus anything that
looks like one in headers (Authorization, Cookie, API keys) or bodies (bearer tokens, PEM private
keys, password/token JSON fields).  Redaction happens once, at the recording boundary, so no later
layer can leak what it never saw.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

MASK = "***REDACTED***"

SENSITIVE_HEADERS = {
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "x-api-key",
    "api-key",
    "x-auth-token",
}

_PATTERNS = [
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----", re.S),
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9\-._~+/]+=*"),
    re.compile(r'(?i)("(?:access_token|refresh_token|id_token|password|client_secret|secret)"\s*:\s*")[^"]*(")'),
    re.compile(r"(?i)((?:access_token|refresh_token|id_token|password|client_secret)=)[^&\s\"']+"),
]


class Redactor:
    """Masks known secret values and secret-looking material in text and headers."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        # Longest first so a secret containing another is masked whole.
        self.secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)

    def add(self, secret: str) -> None:
        if secret and len(secret) >= 4 and secret not in self.secrets:
            self.secrets.append(secret)
            self.secrets.sort(key=len, reverse=True)

    def text(self, value: str) -> str:
        for s in self.secrets:
            if s in value:
                value = value.replace(s, MASK)
        for pat in _PATTERNS:
            if pat.groups >= 2:
                value = pat.sub(lambda m: m.group(1) + MASK + m.group(2), value)
            elif pat.groups == 1:
                value = pat.sub(lambda m: m.group(1) + MASK, value)
            else:
                value = pat.sub(MASK, value)
        return value

    def headers(self, headers: dict[str, str]) -> dict[str, str]:
        out = {}
        for k, v in headers.items():
            if k.lower() in SENSITIVE_HEADERS:
                scheme = v.split(" ", 1)[0] if " " in v else ""
                out[k] = f"{scheme} {MASK}".strip()
            else:
                out[k] = self.text(v)
        return out
