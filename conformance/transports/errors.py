"""Transport exception tree, translated at the boundary (httpx's idea): callers see these only.

Each carries the ``INPUT.*`` rule under which it becomes a finding, and a one-line message suitable
for exit code 2 when the target cannot be reached at all.
"""

from __future__ import annotations


class TransportError(Exception):
    rule = "INPUT.TRANSPORT"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Timeout(TransportError):
    rule = "INPUT.TIMEOUT"


class ConnectFailed(TransportError):
    rule = "INPUT.CONNECT"


class TLSFailed(TransportError):
    rule = "INPUT.TLS"


class ProtocolViolation(TransportError):
    rule = "INPUT.PROTOCOL"


class TooLarge(TransportError):
    rule = "INPUT.TOO-LARGE"
