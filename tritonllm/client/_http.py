"""HTTP transports: Triton's generate extension.

``POST /v2/models/{model}/generate`` answers once with a JSON object;
``/generate_stream`` answers with server-sent events, one ``data: {...}`` per response. The
request body is a JSON object whose keys are the ensemble's input names (plus ``"id"``, which
Triton takes as the request id); a response's keys are output names. An error is
``{"error": "..."}`` with the HTTP status of the first response (400 for INVALID_ARG); an error
after a stream has started arrives as an event under status 200. A stream the caller leaves
early is read to its end for up to ``STOP_DRAIN_S`` before the connection is dropped (see
``_grpc``: a dropped ensemble stream costs Triton 2.51 memory it never returns).

Sync over ``requests``, async over ``aiohttp``; both are imported when a transport is made.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Iterator

import numpy as np

from tritonllm.contract import ENSEMBLE, contract_of

from ._errors import ConnectionError, ServerError, TimeoutError, TritonLLMError, error_from_http
from ._request import STOP_DRAIN_S, InferRequest
from ._results import Outputs
from ._sse import aiter_events, iter_events

_OUTPUT_NAMES = frozenset(t.name for t in ENSEMBLE.outputs)


def base_url(url: str) -> str:
    """``host:port`` (or a full ``http://`` URL) -> the URL requests are made against."""
    return (url if "://" in url else f"http://{url}").rstrip("/")


def generate_path(model: str, stream: bool) -> str:
    return f"/v2/models/{model}/{'generate_stream' if stream else 'generate'}"


def json_body(request: InferRequest) -> dict:
    """The generate body: ``{"id": ..., input name: value}``; [1, 1] inputs are sent as a JSON
    scalar, the variable-length word lists as a JSON array."""
    body = {"id": request.request_id, **request.parameters}  # non-input keys are parameters
    for name, array in request.inputs.items():
        values = [_json_value(v) for v in array.reshape(-1)]
        variable = contract_of(request.model).input(name).dims[0] == -1
        body[name] = values if variable else values[0]
    return body


def _json_value(value):
    if isinstance(value, bytes):
        return value.decode("utf-8")
    return value.item() if isinstance(value, np.generic) else value


def outputs_from_json(obj: dict, status: int) -> Outputs:
    """One response object -> Outputs; an ``{"error": ...}`` object raises."""
    if "error" in obj:
        raise error_from_http(status, str(obj["error"]))
    return {name: value if isinstance(value, list) else [value]
            for name, value in obj.items() if name in _OUTPUT_NAMES}


def outputs_from_event(data: str, status: int) -> Outputs:
    return outputs_from_json(_parse_json(data, status), status)


def error_from_body(status: int, body: bytes) -> ServerError:
    """The error an HTTP error answer carries: a JSON error object, an SSE event holding one,
    or (from a proxy, say) plain text."""
    text = body.decode("utf-8", errors="replace")
    events = list(iter_events(text.splitlines())) if text.lstrip().startswith("data:") else [text]
    for event in events:
        with contextlib.suppress(ValueError):
            obj = json.loads(event)
            if isinstance(obj, dict) and "error" in obj:
                return error_from_http(status, str(obj["error"]))
    return error_from_http(status, text.strip() or f"HTTP {status}")


def _parse_json(text: str | bytes, status: int) -> dict:
    try:
        obj = json.loads(text)
    except ValueError as exc:
        raise ServerError(f"the server sent invalid JSON ({exc}): {text[:200]!r}",
                          http_status=status) from None
    if not isinstance(obj, dict):
        raise ServerError(f"the server sent {type(obj).__name__}, not a JSON object",
                          http_status=status)
    return obj


def _socket_of(response):
    """The socket under a streamed ``requests`` response, or None once the body was read and
    the connection released. urllib3 2 does not expose it for a streamed body, hence the
    private attributes (``HTTPResponse._fp``: http.client's response; ``fp.raw``: SocketIO)."""
    fp = getattr(getattr(response.raw, "_fp", None), "fp", None)
    return getattr(getattr(fp, "raw", None), "_sock", None)


def _drain(response, lines: Iterator[bytes]) -> None:
    """Read the rest of a streamed body's ``lines``, for at most STOP_DRAIN_S (a read timeout
    on the socket, and a deadline between lines), so the connection ends with the request
    instead of before it."""
    sock = _socket_of(response)
    if sock is None:  # the body was read to its end
        return
    deadline = time.monotonic() + STOP_DRAIN_S
    try:
        sock.settimeout(STOP_DRAIN_S)
        for _ in lines:
            if time.monotonic() > deadline:
                return
    except Exception:  # noqa: BLE001 - a timed-out or broken stream is closed by the caller
        return


class HttpTransport:
    """Sync HTTP transport over one ``requests.Session`` (kept-alive connections).
    ``timeout``: seconds a request may take in all (None: no limit; a stream is checked between
    events); ``connect_timeout``: seconds to connect."""

    def __init__(self, url: str, *, timeout: float | None, connect_timeout: float):
        import requests

        self._requests = requests
        self._base = base_url(url)
        self._session = requests.Session()
        self._timeout = timeout
        self._timeouts = (connect_timeout, timeout)

    def infer(self, request: InferRequest) -> Iterator[Outputs]:
        deadline = None if self._timeout is None else time.monotonic() + self._timeout
        with self._mapped_errors():
            response = self._session.post(
                self._base + generate_path(request.model, request.stream),
                json=json_body(request), stream=request.stream, timeout=self._timeouts)
            with response:
                # Held here, so leaving early does not close it: closing urllib3's body
                # generator drops the connection, which Triton takes as a cancellation.
                lines = response.iter_lines() if request.stream else None
                try:
                    yield from self._responses(response, lines, deadline)
                finally:
                    if lines is not None:
                        _drain(response, lines)

    def _responses(self, response, lines: Iterator[bytes] | None,
                   deadline: float | None) -> Iterator[Outputs]:
        """Outputs of the body: one JSON object, or the SSE events of ``lines`` (a stream)."""
        status = response.status_code
        if status != 200:
            raise error_from_body(status, response.content)
        if lines is None:
            yield outputs_from_json(_parse_json(response.content, status), status)
            return
        for data in iter_events(lines):
            yield outputs_from_event(data, status)
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"the stream took longer than {self._timeout} s")

    def live(self) -> bool:
        return self._get_ok("/v2/health/live")

    def ready(self, model: str) -> bool:
        return self._get_ok("/v2/health/ready") and self._get_ok(f"/v2/models/{model}/ready")

    def _get_ok(self, path: str) -> bool:
        with self._mapped_errors():
            return self._session.get(self._base + path, timeout=self._timeouts).status_code == 200

    def close(self) -> None:
        self._session.close()

    @contextlib.contextmanager
    def _mapped_errors(self):
        exceptions = self._requests.exceptions
        try:
            yield
        except exceptions.Timeout as exc:
            raise TimeoutError(f"{self._base}: {exc}") from exc
        except (exceptions.ConnectionError, exceptions.ChunkedEncodingError) as exc:
            raise ConnectionError(f"cannot reach {self._base}: {exc}") from exc
        except exceptions.RequestException as exc:
            raise ConnectionError(f"cannot reach {self._base}: {exc}") from exc


class AsyncHttpTransport:
    """Async HTTP transport over one ``aiohttp.ClientSession``, made on first use inside the
    running event loop. Timeouts as in :class:`HttpTransport`."""

    def __init__(self, url: str, *, timeout: float | None, connect_timeout: float):
        import aiohttp

        self._aiohttp = aiohttp
        self._base = base_url(url)
        self._timeout = aiohttp.ClientTimeout(total=timeout, sock_connect=connect_timeout)
        self._session = None

    def _client(self):
        if self._session is None:
            self._session = self._aiohttp.ClientSession(timeout=self._timeout)
        return self._session

    async def infer(self, request: InferRequest) -> AsyncIterator[Outputs]:
        url = self._base + generate_path(request.model, request.stream)
        async with self._mapped_errors():
            async with self._client().post(url, json=json_body(request)) as response:
                try:
                    async for outputs in self._responses(response, request.stream):
                        yield outputs
                finally:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(response.content.read(), STOP_DRAIN_S)

    async def _responses(self, response, stream: bool) -> AsyncIterator[Outputs]:
        status = response.status
        if status != 200:
            raise error_from_body(status, await response.read())
        if not stream:
            yield outputs_from_json(_parse_json(await response.read(), status), status)
            return
        async for data in aiter_events(response.content):
            yield outputs_from_event(data, status)

    async def live(self) -> bool:
        return await self._get_ok("/v2/health/live")

    async def ready(self, model: str) -> bool:
        return (await self._get_ok("/v2/health/ready")
                and await self._get_ok(f"/v2/models/{model}/ready"))

    async def _get_ok(self, path: str) -> bool:
        async with self._mapped_errors():
            async with self._client().get(self._base + path) as response:
                return response.status == 200

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @contextlib.asynccontextmanager
    async def _mapped_errors(self):
        try:
            yield
        except TritonLLMError:
            raise
        except asyncio.TimeoutError as exc:  # aiohttp's timeouts are asyncio.TimeoutError
            raise TimeoutError(f"{self._base}: the request took longer than "
                               f"{self._timeout.total} s") from exc
        except self._aiohttp.ClientError as exc:
            raise ConnectionError(f"cannot reach {self._base}: {exc}") from exc
