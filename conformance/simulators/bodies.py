"""Reading request bodies in the simulators with a memory cap (hostile vendors send huge bodies)."""

from __future__ import annotations

from starlette.requests import ClientDisconnect, Request

DRAIN_LIMIT = 64 * 1024 * 1024


async def read_body(request: Request, max_body: int, drain_limit: int = DRAIN_LIMIT) -> tuple[bytes, bool, bool]:
    """(body up to ``max_body``, too large?, client gone?) — the cap bounds memory on hostile sizes.

    Past ``max_body`` the rest is read and dropped (so the client gets an answer) up to ``drain_limit``;
    a declared length above it is refused without reading.
    """
    chunks: list[bytes] = []
    size = 0
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > drain_limit:
        return b"", True, False
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size <= max_body:
                chunks.append(chunk)
            elif size > drain_limit:
                break
    except ClientDisconnect:
        return b"".join(chunks), size > max_body, True
    return b"".join(chunks), size > max_body, False
