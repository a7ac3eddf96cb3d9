"""A request-body size limit for the public entry point, as ASGI middleware.

The frontend is what clients reach; it must never buffer (or pass on) an unbounded body. A
request whose ``Content-Length`` is over ``max_bytes`` gets 413 before its body is read; a
chunked body (no length) is read up to ``max_bytes`` and refused with 413 the moment it goes
over. Accepted bodies are replayed to the app unchanged, after which the app's ``receive`` is
the server's again (so a later ``http.disconnect`` still arrives).
"""

from __future__ import annotations

import json

TOO_LARGE = 413


class BodySizeLimit:
    """Wraps an ASGI app; HTTP requests with bodies over ``max_bytes`` get 413 naming the
    limit in OpenAI's error shape."""

    def __init__(self, app, max_bytes: int) -> None:
        if max_bytes < 1:
            raise ValueError(f"max_body_bytes: must be >= 1, got {max_bytes}")
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            return await self._refuse(send, f"Content-Length {declared}")
        body, more = await self._read(receive)
        if more:
            return await self._refuse(send, "a chunked body")
        await self.app(scope, _replay(body, receive), send)

    async def _read(self, receive) -> tuple[bytes, bool]:
        """The body, and True when it went over the limit (reading stops there)."""
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return b"".join(chunks), False
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                return b"", True
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks), False

    async def _refuse(self, send, what: str) -> None:
        message = (f"request body too large: {what} is over max_body_bytes "
                   f"({self.max_bytes} bytes)")
        body = json.dumps({"error": {"message": message, "type": "invalid_request_error",
                                     "param": None, "code": "request_too_large"}}).encode()
        await send({"type": "http.response.start", "status": TOO_LARGE,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})


def _content_length(scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _replay(body: bytes, receive):
    sent = False

    async def replayed():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed
