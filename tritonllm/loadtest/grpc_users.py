"""Locust users over gRPC (tritonclient): the ensemble, and the engine model with token ids.

Decoupled models answer only on gRPC's bidirectional stream, so both users stream even for
``stream=false`` (``enable_empty_final_response`` marks the last response of every request).
A stream's callback does not say which request an error belongs to, so each stream carries one
request at a time: a user keeps a small pool of idle streams and opens another when an
open-loop burst needs it. These users fire one Locust request event per request (type
``gRPC``, response time = E2E in ms, response length = output tokens).

grpcio must run in gevent mode under Locust: :func:`ensure_gevent_grpc` switches it on in
each process before the first channel is made (after Locust's ``--processes`` fork).
"""

from __future__ import annotations

import gevent
from gevent.queue import Empty, Queue

from tritonllm import contract
from tritonllm.defaults import GRPC_PORT
from tritonllm.loadtest.metrics import RequestRecord
from tritonllm.loadtest.providers import GrpcEngineProvider, GrpcEnsembleProvider
from tritonllm.loadtest.trace import RequestTrace
from tritonllm.loadtest.users import LlmUser, error_kind
from tritonllm.loadtest.workloads import Prompt

POOL_SPARE_THREADS = 10  # gevent's own default pool size, left for its other blocking work


def ensure_gevent_grpc() -> None:
    """Make grpcio cooperate with gevent (idempotent; grpc keeps the flag itself)."""
    from grpc._cython import cygrpc
    from grpc.experimental import gevent as grpc_gevent

    if not cygrpc.g_gevent_activated:  # init once per process
        grpc_gevent.init_gevent()


def grpc_url(host: str) -> str:
    """``grpc://h:p``, ``http://h:p`` or ``h:p`` -> ``h:p`` (tritonclient's form)."""
    for scheme in ("grpc://", "http://", "https://"):
        if host.startswith(scheme):
            host = host[len(scheme):]
    if not host or ":" not in host:
        raise ValueError(f"host: {host!r} is not host:port of Triton's gRPC endpoint (e.g. "
                         f"127.0.0.1:{GRPC_PORT})")
    return host.rstrip("/")


class ResponseStream:
    """One tritonclient client with its open bidirectional stream; responses go to a queue.

    In gevent mode grpcio waits for each channel's events on a native thread of gevent's hub
    threadpool, which holds 10 threads by default: with more streams open than that, the
    streams beyond it stop receiving until another closes, and an open-loop run loses their
    responses. So the pool grows with the streams open in the process (:data:`open_streams`).
    """

    open_streams = 0

    def __init__(self, url: str) -> None:
        import tritonclient.grpc as grpcclient

        ResponseStream.open_streams += 1
        pool = gevent.get_hub().threadpool
        pool.maxsize = max(pool.maxsize, ResponseStream.open_streams + POOL_SPARE_THREADS)
        self.client = grpcclient.InferenceServerClient(url)
        self.responses: Queue = Queue()
        self.client.start_stream(callback=lambda result, error: self.responses.put((result, error)))

    def close(self) -> None:
        try:
            self.client.stop_stream(cancel_requests=True)
        finally:
            self.client.close()
            ResponseStream.open_streams -= 1


class GrpcUser(LlmUser):
    """The shared request path; subclasses choose a provider."""

    abstract = True
    stream = True

    def on_start(self) -> None:
        super().on_start()
        ensure_gevent_grpc()
        self._url = grpc_url(self.host or "")
        self._idle: list[ResponseStream] = []
        self._provider = self.make_provider()

    def make_provider(self):
        raise NotImplementedError

    def on_stop(self) -> None:
        super().on_stop()
        while self._idle:
            self._idle.pop().close()

    def send(self, prompt: Prompt, request_id: str) -> RequestRecord:
        stream = self._idle.pop() if self._idle else ResponseStream(self._url)
        trace = self.new_trace(request_id, streamed=self._provider.streamed)
        error = self._exchange(stream, prompt, request_id, trace)
        record = trace.finish(error)
        if error is None:
            self._idle.append(stream)
        else:  # it may still deliver responses for the failed request: do not reuse it
            gevent.spawn(stream.close)
        self._fire_request(record)
        return record

    def _exchange(self, stream: ResponseStream, prompt: Prompt, request_id: str,
                  trace: RequestTrace) -> str | None:
        timeout = self.environment.tritonllm.options.request_timeout
        try:
            stream.client.async_stream_infer(
                self._provider.model, self._provider.inputs(prompt), request_id=request_id,
                parameters=self._provider.parameters or None, enable_empty_final_response=True)
            return self._collect(stream, trace, timeout)
        except Exception as exc:  # tritonclient raises its own exception types
            return error_kind(exc)

    def _collect(self, stream: ResponseStream, trace: RequestTrace, timeout: float) -> str | None:
        deadline = trace.elapsed() + timeout
        while True:
            try:
                result, error = stream.responses.get(timeout=max(deadline - trace.elapsed(), 0))
            except Empty:
                return f"timeout after {timeout:g} s"
            if error is not None:
                return error_kind(error)
            chunk = self._provider.parse(result)
            trace.add(chunk)
            if chunk.final:
                return None

    def _fire_request(self, record: RequestRecord) -> None:
        self.environment.events.request.fire(
            request_type="gRPC", name=f"{self._provider.model} stream_infer",
            response_time=record.e2e * 1000.0, response_length=record.output_tokens or 0,
            exception=RuntimeError(record.error) if record.error else None, context={})


class GrpcStreamUser(GrpcUser):
    """The ``ensemble`` over gRPC streaming (per-token responses, TTFT and ITL)."""

    kind = "grpc_stream"

    def make_provider(self) -> GrpcEnsembleProvider:
        model = self.environment.tritonllm.options.model or contract.ENSEMBLE.name
        return GrpcEnsembleProvider(stream=self.stream, model=model)


class GrpcEngineUser(GrpcUser):
    """The engine model ``tensorrt_llm`` with the prompt's token ids: no pre/post-processing,
    so comparing it with :class:`GrpcStreamUser` isolates their cost."""

    kind = "grpc_engine"

    def make_provider(self) -> GrpcEngineProvider:
        model = self.environment.tritonllm.options.model or contract.TENSORRT_LLM.name
        end_id = self.environment.tritonllm.session.end_id
        return GrpcEngineProvider(stream=self.stream, model=model, end_id=end_id)
