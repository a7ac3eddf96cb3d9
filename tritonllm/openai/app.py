"""The ASGI app: OpenAI's routes over the Triton ``ensemble``, a thin Starlette adapter.

    POST /v1/chat/completions   POST /v1/completions
    GET  /v1/models             GET  /v1/models/{id}
    GET  /health                200 when Triton and the ensemble are ready, else 503
    GET  /metrics               Prometheus text (see :mod:`tritonllm.openai.metrics`)

A body over ``settings.max_body_bytes`` gets 413 (:mod:`.limits`), chunked or not.

Parsing is :mod:`.protocol`, the engine call :mod:`.generation`, the bodies :mod:`.responses`.
A client that disconnects ends its engine request: a stream when the next chunk cannot be
sent, a non-streamed request as soon as the disconnect arrives.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tritonllm.client import AsyncClient, TritonLLMError

from .errors import OpenAIError, invalid, model_not_found, unavailable, unsupported
from .generation import Delta, Finish, generate
from .limits import BodySizeLimit
from .logprobs import TokenTexts, chat_logprobs, completion_logprobs
from .metrics import FrontendMetrics, RequestTimer
from .protocol import CHAT, COMPLETIONS, GenerationCall, parse_body, parse_chat, parse_completion
from .responses import DONE, ResponseHead, model_card, model_list, sse
from .settings import FrontendSettings

CLIENT_CLOSED = 499  # nginx's status for "the client closed the connection"


def create_app(settings: FrontendSettings) -> Starlette:
    """A new app; its gRPC client is made at start-up and closed at shutdown."""
    frontend = Frontend(settings)
    routes = [
        Route("/v1/chat/completions", frontend.chat_completions, methods=["POST"]),
        Route("/v1/completions", frontend.completions, methods=["POST"]),
        Route("/v1/models", frontend.models, methods=["GET"]),
        Route("/v1/models/{model_id:path}", frontend.model, methods=["GET"]),
        Route("/health", frontend.health, methods=["GET"]),
        Route("/metrics", frontend.metrics_text, methods=["GET"]),
    ]
    limit = Middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app = Starlette(routes=routes, lifespan=frontend.lifespan, middleware=[limit])
    app.state.frontend = frontend
    return app


def error_response(exc: OpenAIError) -> JSONResponse:
    return JSONResponse(exc.body(), status_code=exc.status)


class _ClosingStream(StreamingResponse):
    """Closes its body iterator however streaming ends (a disconnect included), so the engine
    request is stopped at once rather than when the generator is collected."""

    async def stream_response(self, send) -> None:
        try:
            await super().stream_response(send)
        finally:
            await self.body_iterator.aclose()


class Frontend:
    """The handlers and what they share: settings, one AsyncClient (gRPC), the metrics."""

    def __init__(self, settings: FrontendSettings):
        self.settings = settings
        self.metrics = FrontendMetrics()
        self.created = int(time.time())
        self.client: AsyncClient | None = None
        self._token_texts: TokenTexts | None = None

    @contextlib.asynccontextmanager
    async def lifespan(self, app):
        self.client = AsyncClient(protocol="grpc", url=self.settings.triton_url,
                                  model=self.settings.triton_model,
                                  timeout=self.settings.request_timeout_s)
        try:
            yield
        finally:
            await self.client.close()

    # --- routes ------------------------------------------------------------------------------

    async def chat_completions(self, request: Request) -> Response:
        return await self._generation(request, CHAT, parse_chat)

    async def completions(self, request: Request) -> Response:
        return await self._generation(request, COMPLETIONS, parse_completion)

    async def models(self, request: Request) -> Response:
        return JSONResponse(model_list(self.settings.model_name, self.created))

    async def model(self, request: Request) -> Response:
        model_id = request.path_params["model_id"]
        if model_id != self.settings.model_name:
            return error_response(model_not_found(model_id, self.settings.model_name))
        return JSONResponse(model_card(model_id, self.created))

    async def health(self, request: Request) -> Response:
        try:
            ready = await self.client.ready()
        except TritonLLMError as exc:
            return error_response(unavailable(f"the inference server cannot be reached: {exc}"))
        if not ready:
            return error_response(unavailable(
                f"the inference server or its model {self.settings.triton_model!r} is not "
                "ready"))
        return JSONResponse({"status": "ok"})

    async def metrics_text(self, request: Request) -> Response:
        return Response(self.metrics.exposition(), media_type=self.metrics.content_type)

    # --- generation --------------------------------------------------------------------------

    async def _generation(self, request: Request, endpoint: str, parse) -> Response:
        try:
            call = _parsed(parse, await request.body(), self.settings.default_max_tokens)
            if call.model != self.settings.model_name:
                raise model_not_found(call.model, self.settings.model_name)
            texts = self.token_texts() if call.logprobs is not None else None
            response = await (self._streamed(call, texts) if call.stream
                              else self._whole(call, request, texts))
        except OpenAIError as exc:
            response = error_response(exc)
        self.metrics.answered(endpoint, response.status_code)
        return response

    def token_texts(self) -> TokenTexts:
        """The tokens' texts for ``logprobs`` (loaded on first use); 400 without a tokenizer."""
        if self._token_texts is None:
            if not self.settings.tokenizer:
                raise unsupported("logprobs", "the frontend was started without the model's "
                                              "tokenizer (--tokenizer)")
            self._token_texts = TokenTexts(self.settings.tokenizer)
        return self._token_texts

    async def _whole(self, call: GenerationCall, request: Request,
                     texts: TokenTexts | None = None) -> Response:
        timer = self.metrics.timer(call.endpoint)
        with timer:
            work = asyncio.ensure_future(_collect(generate(self.client, call, decoupled=self.settings.decoupled), timer))
            gone = asyncio.ensure_future(_disconnected(request))
            await asyncio.wait({work, gone}, return_when=asyncio.FIRST_COMPLETED)
            gone.cancel()
            if not work.done():  # the client left: stop the engine request
                work.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await work
                timer.abort()
                return Response(status_code=CLIENT_CLOSED)
            text, finish, tokens = work.result()
        timer.finish(finish.reason, finish.prompt_tokens, finish.completion_tokens)
        head = ResponseHead(call.endpoint, call.model)
        logprobs = None if texts is None else _logprobs(call, tokens, texts)
        calls = call.tools.calls(text) if call.chat else None
        if calls:
            finish = dataclasses.replace(finish, reason=call.tools.finish_reason())
        return JSONResponse(head.body(call.prompt + text if call.echo else text, finish,
                                      logprobs, calls))

    async def _streamed(self, call: GenerationCall, texts: TokenTexts | None = None) -> Response:
        """Waits for the first event, so that a refused request still gets its HTTP 400."""
        timer = self.metrics.timer(call.endpoint)
        events = generate(self.client, call, decoupled=self.settings.decoupled)
        first = await anext(events)
        return _ClosingStream(_sse_events(call, first, events, timer, texts),
                              media_type="text/event-stream")


def _parsed(parse, raw: bytes, default_max_tokens: int) -> GenerationCall:
    try:
        return parse(parse_body(raw), default_max_tokens=default_max_tokens)
    except ValueError as exc:  # a value the client library cannot encode; names the field
        raise invalid(str(exc).split(":")[0], str(exc)) from None


async def _collect(events, timer: RequestTimer) -> tuple[str, Finish, list]:
    texts, tokens = [], []
    async for event in events:
        if isinstance(event, Delta):
            timer.delta()
            texts.append(event.text)
            tokens.extend(event.tokens)
        else:
            return "".join(texts), event, tokens
    raise RuntimeError("generate ended without a Finish event")


def _logprobs(call: GenerationCall, tokens, texts: TokenTexts, offset: int = 0) -> dict:
    """``offset``: where these tokens' text starts in the choice's text (completions)."""
    if call.chat:
        return chat_logprobs(list(tokens), texts)
    start = len(call.prompt) if call.echo else 0
    return completion_logprobs(list(tokens), texts, call.logprobs, start + offset)


async def _disconnected(request: Request) -> None:
    """Returns when the HTTP client has gone (the body was read already)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def _sse_events(call: GenerationCall, first, events, timer: RequestTimer,
                      texts: TokenTexts | None = None):
    """The SSE stream: an opening chunk (chat: the role; completions with echo: the prompt),
    the text deltas, a chunk with the finish reason, the usage chunk when asked, ``[DONE]``.
    An error after the stream began is sent in-band as an OpenAI error event."""
    head = ResponseHead(call.endpoint, call.model)
    chunk = lambda **kw: sse(head.chunk(with_usage_field=call.include_usage, **kw))  # noqa: E731
    done = False
    try:
        with timer:
            if call.chat or call.echo:
                yield chunk(text=call.prompt if call.echo else None, first=call.chat)
            finish, sent, held = None, 0, _HeldReply(call.tools)
            async for event in _chain(first, events):
                if isinstance(event, Finish):
                    finish = event
                    continue
                timer.delta()
                for delta in held.feed(event):
                    logprobs = None if texts is None else _logprobs(call, delta.tokens, texts,
                                                                    sent)
                    sent += len(delta.text)
                    yield chunk(text=delta.text, logprobs=logprobs)
            calls, rest = held.finish()
            if calls:
                logprobs = None if texts is None else _logprobs(call, rest.tokens, texts)
                yield chunk(tool_calls=calls, logprobs=logprobs)
                finish = dataclasses.replace(finish, reason=call.tools.finish_reason())
            elif rest is not None:
                logprobs = None if texts is None else _logprobs(call, rest.tokens, texts, sent)
                yield chunk(text=rest.text, logprobs=logprobs)
            yield chunk(finish_reason=finish.reason)
            if call.include_usage:
                yield sse(head.usage_chunk(finish))
            timer.finish(finish.reason, finish.prompt_tokens, finish.completion_tokens)
            done = True
            yield DONE
    except OpenAIError as exc:
        done = True
        yield sse(exc.body())
        yield DONE
    finally:
        if not done:
            timer.abort()
        await events.aclose()


class _HeldReply:
    """Streaming with tools: text that is, or may still become, a tool call is held back; once
    it cannot (``auto``: the reply does not open with ``{``), it goes out as content."""

    def __init__(self, tools) -> None:
        self.tools = tools
        self.holding = tools.active
        self.held: list[Delta] = []

    def feed(self, delta: Delta) -> list[Delta]:
        """The deltas to send now."""
        if not self.holding:
            return [delta]
        self.held.append(delta)
        text = "".join(d.text for d in self.held)
        if self.tools.guided or self.tools.could_be_call(text):
            return []
        self.holding, held, self.held = False, self.held, []
        return held

    def finish(self) -> tuple[list[dict] | None, Delta | None]:
        """The reply's tool calls, or None; and what was held, as one delta (or None)."""
        if not self.held:
            return None, None
        rest = Delta("".join(d.text for d in self.held),
                     tuple(t for d in self.held for t in d.tokens))
        return self.tools.calls(rest.text), rest


async def _chain(first, events):
    yield first
    async for event in events:
        yield event
