"""Timing one request as its responses arrive, into a :class:`RequestRecord`.

A user creates a :class:`RequestTrace` right before handing the request to its client library,
calls :meth:`RequestTrace.add` for every parsed response (streamed chunk or the single
non-streamed response), and :meth:`RequestTrace.finish` once the last response is in. The clocks
are injectable so tests can drive a trace with hand-made timestamps.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

from tritonllm.loadtest.metrics import RequestRecord

# The error of a request still unanswered when the run's stop timeout ran out: it counts as
# failed instead of vanishing from the report.
UNFINISHED = "unfinished: still running when the stop timeout ran out"


@dataclass(frozen=True)
class Chunk:
    """One parsed response. ``output_tokens`` is the server's running count of generated
    tokens; ``token_ids`` are filled only by the engine-level provider (no text there).
    ``final`` is true on the response that completes the request."""

    text: str = ""
    token_ids: tuple[int, ...] = ()
    input_tokens: int | None = None
    output_tokens: int | None = None
    final: bool = False

    @property
    def empty(self) -> bool:
        return not self.text and not self.token_ids


class RequestTrace:
    """Accumulates chunk times and the server's token counts for one request.

    ``add(chunk)``: ``chunk.output_tokens`` is the server's RUNNING count of generated tokens
    (the contract's ``num_output_tokens`` is cumulative), so the tokens a chunk brought are the
    difference to the previous count. Empty responses (no text, no ids) update the counts but
    are not chunks (see ``tritonllm.loadtest.metrics``).
    """

    def __init__(self, request_id: str, user: str, streamed: bool,
                 clock: Callable[[], float] = time.perf_counter,
                 wall_clock: Callable[[], float] = time.time) -> None:
        self.request_id = request_id
        self.user = user
        self.streamed = streamed
        self._clock = clock
        self.start_wall = wall_clock()
        self._t0 = clock()
        self._times: list[float] = []
        self._tokens: list[int] = []
        self._counted = 0  # output tokens already attributed to a chunk
        self.input_tokens: int | None = None
        self.output_tokens: int | None = None
        self.text_parts: list[str] = []
        self.token_ids: list[int] = []

    def add(self, chunk: Chunk) -> None:
        """Record one parsed response, timed now."""
        now = self._clock() - self._t0
        if chunk.input_tokens is not None:
            self.input_tokens = chunk.input_tokens
        if chunk.output_tokens is not None:
            self.output_tokens = chunk.output_tokens
        if chunk.empty:
            return
        self.text_parts.append(chunk.text)
        self.token_ids.extend(chunk.token_ids)
        self._times.append(now)
        if self.output_tokens is not None:
            self._tokens.append(self.output_tokens - self._counted)
            self._counted = self.output_tokens

    @property
    def text(self) -> str:
        return "".join(self.text_parts)

    def elapsed(self) -> float:
        return self._clock() - self._t0

    def finish(self, error: str | None = None) -> RequestRecord:
        """The record, ending now. ``error`` is a short kind, e.g. ``"HTTP 400"``."""
        end = self._clock() - self._t0
        tokens = tuple(self._tokens) if len(self._tokens) == len(self._times) else ()
        return RequestRecord(
            request_id=self.request_id, user=self.user, start=self.start_wall, end=end,
            streamed=self.streamed, chunk_times=tuple(self._times), chunk_tokens=tokens,
            input_tokens=self.input_tokens, output_tokens=self.output_tokens, error=error,
        )
