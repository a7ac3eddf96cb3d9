"""SYNTHETIC token source for ``tritonllm bench ensemble`` only: never serves model results.

:class:`ReplayEngine` stands in for the inflight-batching engine behind the ``tensorrt_llm``
step of a benchmark-only repository (``tritonllm.bench.ensemble_bench`` renders it; the shipped
``model_repository`` never contains it). It takes the engine's requests (validated by the real
step's ``parse_request``) and, instead of running a model, replays fixed token ids
(:data:`REPLAY_TEXT`, tokenized, cycled): each step gives every running request its next
token, ``max_new_tokens`` of them (``request_output_len``; end_id is never produced), at up to
``steps_per_second`` steps (0: as fast as it can). Outputs go through the same callbacks and
tensors as the real engine's, so pre/postprocessing, Triton and the clients do their real work.

A GPU engine costs the host next to nothing per token, so this one does little per token too:
a streaming request gets an output at its first token, then every ``emit_every`` tokens (the
deployment's ``stream_interval``, as TensorRT-LLM's engine does it) and at its last, and
cancellation is polled every ``CANCEL_POLL_STEPS`` steps (a Triton call each time).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from tritonllm.engine.request import GenerationOutput, GenerationRequest

CANCEL_POLL_STEPS = 16

# Spaces, punctuation, accents, emoji and CJK: what exact streaming must get right.
REPLAY_TEXT = (" The quick brown fox 🦊 jumps over the lazy dog; naïve café, 你好世界 🎉 —"
               " streaming text must arrive exactly, 東京 and 👩‍💻 included.")


def replay_ids(codec, count: int) -> list[int]:
    """The first ``count`` ids the engine replays (the tokenized text, cycled)."""
    cycle = codec.tokenizer.encode(REPLAY_TEXT, add_special_tokens=False)
    return (cycle * (count // len(cycle) + 1))[:count]


@dataclass
class _Running:
    request: GenerationRequest
    on_output: Callable[[GenerationOutput], None]
    is_cancelled: Callable[[], bool]
    generated: list[int] = field(default_factory=list)
    sent: int = 0  # generated ids already sent
    arrival_time_ns: int = field(default_factory=time.time_ns)


class ReplayEngine:
    """Submit/step loop with the real engine's callback contract (one thread)."""

    def __init__(self, token_ids: list[int], steps_per_second: float = 0.0, emit_every: int = 1):
        if not token_ids:
            raise ValueError("token_ids: the replay needs at least one id")
        if steps_per_second < 0:
            raise ValueError(f"steps_per_second: must be >= 0, got {steps_per_second}")
        self.token_ids = token_ids
        if emit_every < 1:
            raise ValueError(f"emit_every: must be >= 1, got {emit_every}")
        self.step_s = 1.0 / steps_per_second if steps_per_second else 0.0
        self.emit_every = emit_every
        self._new: list[_Running] = []
        self._wake = threading.Condition()
        self._stop = False
        self._thread = threading.Thread(target=self._loop, name="replay-engine", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def submit(self, request: GenerationRequest, on_output, is_cancelled=lambda: False) -> None:
        with self._wake:
            self._new.append(_Running(request, on_output, is_cancelled))
            self._wake.notify()

    def shutdown(self) -> None:
        with self._wake:
            self._stop = True
            self._wake.notify()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        running: list[_Running] = []
        while True:
            with self._wake:
                while not (self._new or running or self._stop):
                    self._wake.wait()
                if self._stop:
                    return
                running += self._new
                self._new = []
            started = time.perf_counter()
            running = [r for r in running if self._step(r)]
            if self.step_s:
                time.sleep(max(0.0, self.step_s - (time.perf_counter() - started)))

    def _step(self, run: _Running) -> bool:
        """Give ``run`` its next token; False once it has finished (or was cancelled)."""
        count = len(run.generated)
        if count % CANCEL_POLL_STEPS == 0 and run.is_cancelled():
            run.on_output(self._output(run, [], True, "cancelled"))
            return False
        run.generated.append(self.token_ids[count % len(self.token_ids)])
        count += 1
        finished = count >= run.request.max_new_tokens
        if run.request.streaming:
            if finished or count == 1 or (count - 1) % self.emit_every == 0:
                run.on_output(self._output(run, run.generated[run.sent:], finished,
                                           "length" if finished else None))
                run.sent = count
        elif finished:
            ids = run.generated if run.request.exclude_input_in_output \
                else run.request.prompt_ids + run.generated
            run.on_output(self._output(run, list(ids), True, "length"))
        return not finished

    def _output(self, run: _Running, ids: list[int], finished: bool, reason) -> GenerationOutput:
        now = time.time_ns()
        return GenerationOutput(
            request_id=run.request.request_id, token_ids=ids, finished=finished,
            finish_reason=reason, arrival_time_ns=run.arrival_time_ns,
            first_scheduled_time_ns=run.arrival_time_ns, first_token_time_ns=now,
            last_token_time_ns=now, num_input_tokens=len(run.request.prompt_ids),
            num_output_tokens=len(run.generated))
