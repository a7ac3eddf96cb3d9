"""``Client`` (sync) and ``AsyncClient`` (asyncio): the same methods over HTTP or gRPC.

Each call builds one protocol-neutral :class:`InferRequest` (``_request``), hands it to a
transport (``_http`` / ``_grpc``, or any object with the same methods: the seam that lets tests
run without a server), and folds the transport's ``Outputs`` into a Completion or Chunks.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from tritonllm.defaults import GRPC_PORT, HTTP_PORT
from ._options import GenerationOptions
from ._errors import ServerError, TritonLLMError
from ._request import InferRequest, build_request, messages_to_text, stop_request
from ._results import Chunk, Completion, CompletionBuilder, Outputs, chunk_from

DEFAULT_URLS = {"http": f"localhost:{HTTP_PORT}", "grpc": f"localhost:{GRPC_PORT}"}
_OPTION_NAMES = frozenset(f.name for f in dataclasses.fields(GenerationOptions))

Messages = Sequence[Mapping[str, str]]


class Transport(Protocol):
    """What :class:`Client` needs from a transport."""

    def infer(self, request: InferRequest) -> Iterator[Outputs]: ...
    def live(self) -> bool: ...
    def ready(self, model: str) -> bool: ...
    def close(self) -> None: ...


class AsyncTransport(Protocol):
    """What :class:`AsyncClient` needs from a transport."""

    def infer(self, request: InferRequest) -> AsyncIterator[Outputs]: ...
    async def live(self) -> bool: ...
    async def ready(self, model: str) -> bool: ...
    async def close(self) -> None: ...


@dataclass(frozen=True)
class ClientSettings:
    """Where and how a client talks. ``url``: ``host:port`` (None: the protocol's default,
    localhost:8000 for HTTP, localhost:8001 for gRPC); ``timeout``: seconds a request may take
    in all (None: no limit); ``connect_timeout``: seconds to connect (and for health calls)."""

    protocol: str = "http"
    url: str | None = None
    model: str = "ensemble"
    timeout: float | None = 300.0
    connect_timeout: float = 10.0

    def __post_init__(self) -> None:
        if self.protocol not in DEFAULT_URLS:
            raise ValueError(f"protocol: must be 'http' or 'grpc', got {self.protocol!r}")
        if self.url is None:
            object.__setattr__(self, "url", DEFAULT_URLS[self.protocol])
        if not self.model:
            raise ValueError("model: must be a non-empty model name")
        if self.timeout is not None and not self.timeout > 0:
            raise ValueError(f"timeout: must be > 0 seconds or None, got {self.timeout!r}")
        if not self.connect_timeout > 0:
            raise ValueError(f"connect_timeout: must be > 0 seconds, got {self.connect_timeout!r}")


@contextlib.contextmanager
def _when_abandoned(action):
    """Run ``action()`` when the caller leaves before the last response (break, timeout,
    Ctrl-C) so the engine can free the request's KV cache; not when the server itself ended
    the request with an error."""
    finished = False
    try:
        yield
        finished = True
    except ServerError:
        finished = True
        raise
    finally:
        if not finished:
            action()


@contextlib.contextmanager
def _closing(responses: Iterator[Outputs]):
    """Close the transport's generator however the caller leaves. Entered before
    :func:`_when_abandoned`, so an abandoned request's stop is sent first and the transport
    then sees its stream end instead of cancelling it."""
    try:
        yield responses
    finally:
        if hasattr(responses, "close"):
            responses.close()


@contextlib.asynccontextmanager
async def _aclosing(responses: AsyncIterator[Outputs]):
    try:
        yield responses
    finally:
        if hasattr(responses, "aclose"):
            await responses.aclose()


class _ClientBase:
    def __init__(self, *, protocol: str, url: str | None, model: str, timeout: float | None,
                 connect_timeout: float, options: GenerationOptions | None):
        self.settings = ClientSettings(protocol, url, model, timeout, connect_timeout)
        self.options = options or GenerationOptions()

    @property
    def protocol(self) -> str:
        return self.settings.protocol

    @property
    def url(self) -> str:
        return self.settings.url

    @property
    def model(self) -> str:
        return self.settings.model

    def _request(self, text: str, fields: dict[str, Any], *, stream: bool, chat: bool,
                 request_id: str | None) -> InferRequest:
        unknown = sorted(set(fields) - _OPTION_NAMES)
        if unknown:
            raise TypeError(f"unknown generation option(s) {unknown}; "
                            f"known: {sorted(_OPTION_NAMES)}")
        options = dataclasses.replace(self.options, **fields) if fields else self.options
        return build_request(self.model, text, options, stream=stream, chat=chat,
                             request_id=request_id)

    def _transport_kwargs(self) -> dict:
        s = self.settings
        return {"timeout": s.timeout, "connect_timeout": s.connect_timeout}

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(protocol={self.protocol!r}, url={self.url!r}, "
                f"model={self.model!r})")


class Client(_ClientBase):
    """A synchronous client of the ``ensemble`` model.

    ``Client(protocol="grpc", url="host:8001")``. Every generation method takes keyword
    options: the fields of :class:`GenerationOptions` (``max_tokens``, ``temperature``,
    ``top_k``, ``top_p``, ``seed``, ``stop``, ...), overriding the client's ``options``.
    ``exclude_input_in_output`` defaults to True: texts hold the completion only.
    ``request_id`` (default: a fresh uuid4) must be unique among requests in flight.
    ``transport``: replaces the HTTP/gRPC transport (see ``Transport``).

    Threads: over gRPC one Client may be shared (one channel, a stream per request); over HTTP
    it holds one ``requests.Session``, which requests does not promise to be thread-safe: give
    each thread its own Client, or use :class:`AsyncClient` for concurrency.
    """

    def __init__(self, *, protocol: str = "http", url: str | None = None,
                 model: str = "ensemble", timeout: float | None = 300.0,
                 connect_timeout: float = 10.0, options: GenerationOptions | None = None,
                 transport: Transport | None = None):
        super().__init__(protocol=protocol, url=url, model=model, timeout=timeout,
                         connect_timeout=connect_timeout, options=options)
        self._transport = transport or self._make_transport()

    def _make_transport(self) -> Transport:
        if self.protocol == "grpc":
            from ._grpc import GrpcTransport
            return GrpcTransport(self.url, **self._transport_kwargs())
        from ._http import HttpTransport
        return HttpTransport(self.url, **self._transport_kwargs())

    def generate(self, prompt: str, *, request_id: str | None = None, **options) -> Completion:
        """Generate a completion of ``prompt`` (one response from the server)."""
        return self._complete(self._request(prompt, options, stream=False, chat=False,
                                            request_id=request_id))

    def stream(self, prompt: str, *, request_id: str | None = None, **options) -> Iterator[Chunk]:
        """Stream the completion of ``prompt`` as it is generated: text deltas whose
        concatenation equals ``generate(...).text``. The request is sent when iteration starts;
        leaving the loop early cancels it."""
        return self._chunks(self._request(prompt, options, stream=True, chat=False,
                                          request_id=request_id))

    def chat(self, messages: Messages, *, tools: Sequence[Mapping] | None = None,
             request_id: str | None = None, **options) -> Completion:
        """The assistant's reply to ``messages`` (``[{"role": ..., "content": ...}, ...]``),
        rendered by the server with the model's chat template, which also gets ``tools``
        (OpenAI ``{"type": "function", "function": {...}}`` objects) when given."""
        return self._complete(self._request(messages_to_text(messages, tools), options,
                                            stream=False, chat=True, request_id=request_id))

    def chat_stream(self, messages: Messages, *, tools: Sequence[Mapping] | None = None,
                    request_id: str | None = None, **options) -> Iterator[Chunk]:
        """:meth:`chat`, streamed as in :meth:`stream`."""
        return self._chunks(self._request(messages_to_text(messages, tools), options,
                                          stream=True, chat=True, request_id=request_id))

    def health(self) -> bool:
        """Whether the server is live; ConnectionError when it cannot be reached."""
        return self._transport.live()

    def ready(self) -> bool:
        """Whether the server and the model are ready for requests."""
        return self._transport.ready(self.model)

    def close(self) -> None:
        self._transport.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def _complete(self, request: InferRequest) -> Completion:
        builder = CompletionBuilder(request.request_id, log_probs=request.wants_log_probs,
                                    top_k=request.num_top_log_probs)
        start = time.perf_counter()
        with _closing(self._transport.infer(request)) as responses, \
                self._stop_if_abandoned(request):
            for outputs in responses:
                builder.add(outputs, time.perf_counter() - start)
        return builder.build()

    def _chunks(self, request: InferRequest) -> Iterator[Chunk]:
        start = time.perf_counter()
        with _closing(self._transport.infer(request)) as responses, \
                self._stop_if_abandoned(request):
            for index, outputs in enumerate(responses):
                yield chunk_from(outputs, index, time.perf_counter() - start,
                                 log_probs=request.wants_log_probs,
                                 top_k=request.num_top_log_probs)

    def _stop_if_abandoned(self, request: InferRequest):
        return _when_abandoned(lambda: self._stop(request.request_id))

    def _stop(self, request_id: str) -> None:
        with contextlib.suppress(TritonLLMError):  # best effort: the request may be done
            for _ in self._transport.infer(stop_request(request_id)):
                pass


class AsyncClient(_ClientBase):
    """The asyncio twin of :class:`Client`: same arguments, ``await`` the methods, and
    ``async for`` over :meth:`stream` / :meth:`chat_stream`. Many requests may run
    concurrently on one client (``asyncio.gather``). Its connection is made on first use and
    belongs to that event loop: use one AsyncClient per loop."""

    def __init__(self, *, protocol: str = "http", url: str | None = None,
                 model: str = "ensemble", timeout: float | None = 300.0,
                 connect_timeout: float = 10.0, options: GenerationOptions | None = None,
                 transport: AsyncTransport | None = None):
        super().__init__(protocol=protocol, url=url, model=model, timeout=timeout,
                         connect_timeout=connect_timeout, options=options)
        self._transport = transport or self._make_transport()
        self._pending_stops: set[asyncio.Task] = set()

    def _make_transport(self) -> AsyncTransport:
        if self.protocol == "grpc":
            from ._grpc import AsyncGrpcTransport
            return AsyncGrpcTransport(self.url, **self._transport_kwargs())
        from ._http import AsyncHttpTransport
        return AsyncHttpTransport(self.url, **self._transport_kwargs())

    async def generate(self, prompt: str, *, request_id: str | None = None,
                       **options) -> Completion:
        """See :meth:`Client.generate`."""
        return await self._complete(self._request(prompt, options, stream=False, chat=False,
                                                  request_id=request_id))

    def stream(self, prompt: str, *, request_id: str | None = None,
               **options) -> AsyncIterator[Chunk]:
        """See :meth:`Client.stream`; use with ``async for``. To leave early, close it
        (``async with contextlib.aclosing(client.stream(...))``): the engine request is then
        stopped at once, not when the event loop gets round to finalizing the generator."""
        return self._chunks(self._request(prompt, options, stream=True, chat=False,
                                          request_id=request_id))

    async def chat(self, messages: Messages, *, tools: Sequence[Mapping] | None = None,
                   request_id: str | None = None, **options) -> Completion:
        """See :meth:`Client.chat`."""
        return await self._complete(self._request(messages_to_text(messages, tools), options,
                                                  stream=False, chat=True, request_id=request_id))

    def chat_stream(self, messages: Messages, *, tools: Sequence[Mapping] | None = None,
                    request_id: str | None = None, **options) -> AsyncIterator[Chunk]:
        """See :meth:`Client.chat_stream`; use with ``async for``."""
        return self._chunks(self._request(messages_to_text(messages, tools), options,
                                          stream=True, chat=True, request_id=request_id))

    async def health(self) -> bool:
        return await self._transport.live()

    async def ready(self) -> bool:
        return await self._transport.ready(self.model)

    async def close(self) -> None:
        await asyncio.gather(*self._pending_stops)
        await self._transport.close()

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc_info) -> None:
        await self.close()

    async def _complete(self, request: InferRequest) -> Completion:
        builder = CompletionBuilder(request.request_id, log_probs=request.wants_log_probs,
                                    top_k=request.num_top_log_probs)
        start = time.perf_counter()
        async with _aclosing(self._transport.infer(request)) as responses:
            with self._stop_if_abandoned(request):
                async for outputs in responses:
                    builder.add(outputs, time.perf_counter() - start)
        return builder.build()

    def _stop_if_abandoned(self, request: InferRequest):
        """The stop runs as a task (awaited by :meth:`close`): an abandoned async generator is
        finalized by the event loop, where awaiting more network calls would race the loop's
        own ``aclose``."""
        def schedule() -> None:
            task = asyncio.get_running_loop().create_task(self._stop(request.request_id))
            self._pending_stops.add(task)
            task.add_done_callback(self._pending_stops.discard)

        return _when_abandoned(schedule)

    async def _stop(self, request_id: str) -> None:
        with contextlib.suppress(TritonLLMError):  # best effort: the request may be done
            async for _ in self._transport.infer(stop_request(request_id)):
                pass

    async def _chunks(self, request: InferRequest) -> AsyncIterator[Chunk]:
        start = time.perf_counter()
        async with _aclosing(self._transport.infer(request)) as responses:
            with self._stop_if_abandoned(request):
                index = 0
                async for outputs in responses:
                    yield chunk_from(outputs, index, time.perf_counter() - start,
                                     log_probs=request.wants_log_probs,
                                 top_k=request.num_top_log_probs)
                    index += 1
