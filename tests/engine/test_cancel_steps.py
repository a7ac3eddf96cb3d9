"""A cancelled request frees its KV cache within one engine step of the cancel reaching the
engine, counted with the engine's own step counter (``EngineStats.steps``), never with a clock.

The two ways a cancel arrives, both used by the Triton adapter when the OpenAI frontend's
client disconnects (tests/openai/test_live.py shows that path end to end):
- ``is_cancelled`` (Triton's response sender once the gRPC stream is cancelled) is polled at
  the start of every step: the request is freed in the step that first sees it, before that step
  is counted;
- ``cancel(request_id)`` (TensorRT-LLM's ``stop`` request) may come from any thread at any time:
  a step already under way finishes, and the next one frees the request.
"""

from __future__ import annotations

import threading
import time

from tests.engine.engine_helpers import tiny_engine

from tritonllm.engine import GenerationOutput, GenerationRequest, SamplingParams

PROMPT = [5, 17, 33, 101, 7, 9, 250, 64, 12, 88]
NEW_TOKENS = 100  # prompt + new tokens fit the tiny engine's max_seq_len (128)


def long_request(request_id: str) -> GenerationRequest:
    """Streamed, and forced (min_tokens) to run far longer than the test lets it."""
    return GenerationRequest(request_id, PROMPT, NEW_TOKENS, streaming=True,
                             sampling=SamplingParams(min_tokens=NEW_TOKENS))


class FreedAt:
    """An ``on_output`` that records, at the final output, the engine's step count and whether
    the cache is all free (the engine publishes freed capacity before the final output)."""

    def __init__(self, engine):
        self.engine, self.outputs = engine, []
        self.done = threading.Event()
        self.steps = self.cache_full = None

    def __call__(self, output: GenerationOutput) -> None:
        self.outputs.append(output)
        if output.finished:
            stats = self.engine.stats()
            self.steps = stats.steps
            self.cache_full = stats.free_kv_tokens == stats.total_kv_tokens
            self.done.set()

    def wait(self) -> None:
        assert self.done.wait(120), "the request never finished"
        assert self.outputs[-1].finish_reason == "cancelled" and len(self.outputs) < NEW_TOKENS


def wait_for_outputs(freed: FreedAt, count: int) -> None:
    deadline = time.monotonic() + 120
    while len(freed.outputs) < count:
        assert time.monotonic() < deadline, "no outputs"
        time.sleep(0.005)


def test_is_cancelled_frees_in_the_step_that_sees_it(tiny_model):
    engine = tiny_engine(tiny_model)
    try:
        freed, flag, seen = FreedAt(engine), threading.Event(), []

        def is_cancelled() -> bool:  # runs on the engine thread, at the start of a step
            if flag.is_set() and not seen:
                seen.append(engine.stats().steps)
            return flag.is_set()

        engine.submit(long_request("polled"), freed, is_cancelled=is_cancelled)
        wait_for_outputs(freed, 3)
        flag.set()
        freed.wait()
        assert freed.cache_full
        assert freed.steps - seen[0] == 0  # no further step ran for it
    finally:
        engine.shutdown()


def test_cancel_from_another_thread_frees_within_one_step(tiny_model):
    engine = tiny_engine(tiny_model)
    try:
        freed = FreedAt(engine)
        engine.submit(long_request("stopped"), freed)
        wait_for_outputs(freed, 3)
        assert engine.cancel("stopped")
        # The cancel has reached the engine by now, at a step count of at most this.
        reached_by = engine.stats().steps
        freed.wait()
        assert freed.cache_full
        assert freed.steps - reached_by <= 1
    finally:
        engine.shutdown()
