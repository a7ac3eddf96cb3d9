"""Locust users over HTTP: ``generate`` (FastHttpUser), ``generate_stream`` (SSE) and the
OpenAI API's streamed completions (SSE, the frontend on :9000).

Every user draws prompts from the process's :class:`~tritonllm.loadtest.session.LoadTestSession`
(``environment.tritonllm``), times the request with a :class:`RequestTrace` and hands the record
to the session. For Locust's own statistics each request is one event whose response time is
our E2E latency (ms) and whose response length is the output token count; streamed requests
also fire ``METRIC`` events named ``TTFT`` and ``TPOT`` so they show live in Locust's table and
HTML report (those rows are counted in Locust's "Aggregated" row; our summary is not affected).

Arrivals: closed loop by default (the next request when the last one ends); with
``--request-rate`` each user sends on a Poisson clock and keeps any number of requests in
flight (open loop). In-flight requests finish within Locust's ``--stop-timeout``; one still
running then is recorded as failed (:data:`UNFINISHED`), so no request leaves the report.
"""

from __future__ import annotations

import functools

from gevent import GreenletExit
from gevent.pool import Group
from locust import FastHttpUser, HttpUser, User, task

from tritonllm.loadtest.metrics import RequestRecord
from tritonllm.loadtest.providers import (HttpGenerateProvider, HttpStreamProvider,
                                          OpenAIStreamProvider, ServerReportedError,
                                          served_model_ids)
from tritonllm.loadtest.trace import UNFINISHED, RequestTrace
from tritonllm.loadtest.workloads import Prompt

_MAX_ERROR_CHARS = 120


def error_kind(exc: BaseException) -> str:
    """A short, groupable description of a failure."""
    return f"{type(exc).__name__}: {str(exc)[:_MAX_ERROR_CHARS]}"


class LlmUser(User):
    """The request loop; subclasses implement :meth:`send` and set ``kind``."""

    abstract = True
    kind = "llm"

    def on_start(self) -> None:
        self._in_flight = Group()
        self._traces: dict[str, RequestTrace] = {}  # the requests this user has in flight
        # Open loop: the first task sends nothing, so the first request too comes after an
        # exponential gap (Locust's wait_time, which a stop interrupts), as in a Poisson
        # process; sent at once, every user's first request would make a burst at t = 0.
        self._await_first_arrival = self.environment.tritonllm.options.request_rate > 0

    def wait_time(self) -> float:
        controller = self.environment.tritonllm
        return controller.session.arrival_gap(controller.total_users())

    @task
    def generate(self) -> None:
        if self._await_first_arrival:
            self._await_first_arrival = False
        elif self.environment.tritonllm.options.request_rate > 0:
            self._in_flight.spawn(self._one_request)
        else:
            self._one_request()

    def on_stop(self) -> None:
        # Open loop: let requests already sent finish within Locust's stop timeout.
        self._in_flight.join(timeout=self.environment.stop_timeout or 0)
        self._in_flight.kill(block=True, timeout=5)  # their records are added before the report

    def _one_request(self) -> None:
        session = self.environment.tritonllm.session
        request_id = session.new_request_id()
        try:
            record = self.send(session.next_prompt(), request_id)
        except GreenletExit:  # still in flight when Locust's stop timeout ran out: the record
            # keeps what had arrived (its chunks and token counts)
            trace = self._traces.get(request_id) or RequestTrace(request_id, self.kind, False)
            session.add(trace.finish(UNFINISHED))
            raise
        finally:
            self._traces.pop(request_id, None)
        session.add(record)
        self._fire_metrics(record)

    def send(self, prompt: Prompt, request_id: str) -> RequestRecord:
        """Send one request and time it with a trace from :meth:`new_trace`."""
        raise NotImplementedError

    def new_trace(self, request_id: str, streamed: bool) -> RequestTrace:
        """The request's trace, kept while it is in flight."""
        trace = self._traces[request_id] = RequestTrace(request_id, self.kind, streamed)
        return trace

    def _fire_metrics(self, record: RequestRecord) -> None:
        for name, value in (("TTFT", record.ttft), ("TPOT", record.tpot)):
            if record.ok and value is not None:
                self.environment.events.request.fire(
                    request_type="METRIC", name=name, response_time=value * 1000.0,
                    response_length=0, exception=None, context={})

    def _finish_locust_event(self, response, record: RequestRecord) -> None:
        """Make the Locust client's own event carry our E2E and token count."""
        response.request_meta["response_time"] = record.e2e * 1000.0
        response.request_meta["response_length"] = record.output_tokens or 0
        if record.ok:
            response.success()
        else:
            response.failure(record.error)


def http_error(response) -> str | None:
    """``None`` for HTTP 200, else ``"HTTP <status>: <server message>"``."""
    if response.status_code == 200:
        return None
    if not response.status_code:
        return f"connection: {str(getattr(response, 'error', ''))[:_MAX_ERROR_CHARS]}"
    try:
        message = response.json().get("error", "")
    except ValueError:
        message = response.text or ""
    return f"HTTP {response.status_code}: {str(message)[:_MAX_ERROR_CHARS]}"


class HttpGenerateUser(LlmUser, FastHttpUser):
    """Non-streaming ``POST /v2/models/{model}/generate``: E2E only (no TTFT)."""

    kind = "http_generate"
    concurrency = 64  # connections per user, for open-loop bursts

    def send(self, prompt: Prompt, request_id: str) -> RequestRecord:
        provider = HttpGenerateProvider(self.environment.tritonllm.options.model or "ensemble")
        trace = self.new_trace(request_id, streamed=False)
        with self.client.post(provider.path, json=provider.body(prompt, request_id),
                              name="generate", catch_response=True,
                              timeout=self.environment.tritonllm.options.request_timeout) as resp:
            error = http_error(resp)
            if error is None:
                try:
                    trace.add(provider.parse(resp.json()))
                except (ValueError, ServerReportedError) as exc:
                    error = error_kind(exc)
            record = trace.finish(error)
            self._finish_locust_event(resp, record)
        return record


class HttpStreamUser(LlmUser, HttpUser):
    """Streaming ``POST /v2/models/{model}/generate_stream`` (SSE), timed per chunk.

    It runs on ``requests`` (Locust's HttpUser): reading a chunked response with
    ``iter_lines(chunk_size=None)`` hands over each event as soon as its bytes arrive, so chunk
    times are not delayed by read buffering.
    """

    kind = "http_stream"
    request_name = "generate_stream"

    def make_provider(self, prompt: Prompt):
        return HttpStreamProvider(self.environment.tritonllm.options.model or "ensemble")

    def send(self, prompt: Prompt, request_id: str) -> RequestRecord:
        provider = self.make_provider(prompt)
        trace = self.new_trace(request_id, streamed=True)
        with self.client.post(provider.path, json=provider.body(prompt, request_id),
                              name=self.request_name or provider.path, stream=True, catch_response=True,
                              timeout=self.environment.tritonllm.options.request_timeout) as resp:
            error = http_error(resp) or self._read_events(resp, provider, trace)
            record = trace.finish(error)
            self._finish_locust_event(resp, record)
        return record

    @staticmethod
    def _read_events(resp, provider, trace: RequestTrace) -> str | None:
        try:
            for line in resp.iter_lines(chunk_size=None):
                chunk = provider.parse_line(line)
                if chunk is not None:
                    trace.add(chunk)
            if (chunk := provider.parse_line(b"")) is not None:  # no blank line at the end
                trace.add(chunk)
        except (ServerReportedError, OSError, ValueError) as exc:  # requests' errors are OSErrors
            return error_kind(exc)
        return None


class OpenAIStreamUser(HttpStreamUser):
    """The OpenAI API streamed (``/v1/completions``; ``/v1/chat/completions`` for chat
    workloads), timed per SSE chunk like :class:`HttpStreamUser`. ``--model`` is the served
    model id (default: the one the frontend lists at ``GET /v1/models``); the host is the
    frontend (``make serve``: port 9000)."""

    kind = "openai"
    request_name = None  # the path

    def on_start(self) -> None:
        super().on_start()
        self._model = self.environment.tritonllm.options.model or served_model_id(self.host)

    def make_provider(self, prompt: Prompt):
        return OpenAIStreamProvider(self._model, chat=prompt.chat)


@functools.cache  # once per process, not once per user
def served_model_id(host: str) -> str:
    """The one model id an OpenAI-API server lists (not a timed request)."""
    ids = served_model_ids(host, timeout_s=30)
    if len(ids) != 1:
        raise ValueError(f"--model: {host} serves {ids or 'no model'}; name the one to call")
    return ids[0]
