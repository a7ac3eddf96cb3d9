"""The inflight-batching engine: a background step loop over scheduler, runner and sampler.

Each step: ``schedule`` (decode rows + prompt chunks, requests joining and leaving) →
``runner.forward`` → ``sample`` → postprocess (append tokens, check end_id / stop words /
length, send outputs through each request's callback). The loop sleeps on a condition variable
when there is nothing to do.

Threading: ``submit``, ``cancel``, ``stats`` and ``shutdown`` may be called from any thread.
Callbacks (``on_output``, ``is_cancelled``) run on the engine thread; they should be quick. An
exception raised while handling one request (its callback, its sampling) fails that request
only, with ``finish_reason="error"``; an exception in the batched forward fails the requests of
that batch; the loop keeps serving either way.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Callable

from tritonllm.contract import TIMEOUT_MARK
from tritonllm.engine.config import EngineConfig
from tritonllm.engine.request import GenerationOutput, GenerationRequest, Sequence, check_fits
from tritonllm.engine.scheduler import ScheduledBatch, Scheduler
from tritonllm.engine.speculative import accept
from tritonllm.engine.stats import EngineStats
from tritonllm.engine.threads import ThreadGovernor, on_own_thread, thread_budget

log = logging.getLogger(__name__)

OutputCallback = Callable[[GenerationOutput], None]
CancelCheck = Callable[[], bool]


class QueueFullError(RuntimeError):
    """The engine's waiting queue is full: the request was not queued; retry later.

    The message names the limit and carries both phrasings clients look for: Triton core's
    "Exceeds maximum queue size" and TensorRT-LLM's "Maximum queue size of N".
    """

    def __init__(self, limit: int, waiting: int):
        super().__init__(f"max_queue_size: server busy, {waiting} requests already waiting "
                         f"(Maximum queue size of {limit} reached; Exceeds maximum queue size); "
                         "retry later")
        self.limit = limit


class LLMEngine:
    """Serve generation requests with inflight batching on one ``ModelRunner``.

    ``model_dir_or_runner``: a Hugging Face Llama checkpoint directory, a TensorRT-LLM
    checkpoint directory (``ModelRunner.from_dir``), or a ``ModelRunner``
    (e.g. from ``ModelRunner.from_state_dict``) built with the same ``config``. A directory is
    loaded on a thread that then exits (see ``threads.on_own_thread``); a runner built on a thread
    that lives on, such as the main thread, leaves the step's OpenMP threads sleeping at each
    barrier on a machine with as many threads as cores (correct, but slower).
    ``tokenizer``: the model's tokenizer (or its directory); with it the engine serves guided
    requests (:mod:`tritonllm.engine.guided`), without it refuses them.
    """

    def __init__(self, model_dir_or_runner, config: EngineConfig | None = None,
                 tokenizer=None) -> None:
        from tritonllm.engine.guided import GuidedDecoding
        from tritonllm.engine.runner import ModelRunner  # torch stays out of plain imports
        from tritonllm.engine.sampler import Sampler
        from tritonllm.engine.speculative import make_proposer

        if isinstance(model_dir_or_runner, (str, Path)):
            config = config or EngineConfig()
            model_dir_or_runner = on_own_thread(ModelRunner.from_dir, model_dir_or_runner, config)
        self.runner = model_dir_or_runner
        self.config = config or self.runner.config
        if self.runner.config != self.config:
            raise ValueError("config: differs from the config the ModelRunner was built with")
        self.scheduler = Scheduler(self.config)
        self.guided = GuidedDecoding(tokenizer, self.runner.vocab_size,
                                     self.runner.eos_token_ids)
        if tokenizer is not None and self.guided.grammars is None:
            log.warning("guided decoding is off: %s", self.guided.unavailable)
        self.sampler = Sampler(self.guided.grammars)
        self.speculator = make_proposer(self.config, self.runner)
        self.threads = ThreadGovernor(thread_budget(self.config.num_threads))
        log.info("engine threads: %s", self.threads.budget.reason)
        self._stats = EngineStats()
        self._cond = threading.Condition()
        self._inbox: list[Sequence] = []
        self._cancel_ids: set[str] = set()
        self._live: dict[str, Sequence] = {}  # request_id -> sequence, until finished
        self._next_seq_id = 0
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._step_clock = 0.0  # perf_counter() up to which the current step is counted
        self._refresh_cache_stats()
        # Hears the exception that ends the step loop (on the dying engine thread); the
        # requests in flight are then the caller's to answer: the engine cannot finish them.
        self.on_fatal: Callable[[BaseException], None] | None = None

    # ---- public API ----------------------------------------------------------------------

    def start(self) -> "LLMEngine":
        """Start the step loop on a background thread (idempotent); returns self."""
        with self._cond:
            if self._thread is None:
                self._stopping = False
                self._thread = threading.Thread(target=self._run, name="tritonllm-engine",
                                                daemon=True)
                self._thread.start()
        return self

    def submit(self, request: GenerationRequest, on_output: OutputCallback,
               is_cancelled: CancelCheck | None = None) -> None:
        """Queue a request; outputs arrive through ``on_output`` on the engine thread.

        Raises ValueError (naming the field and the limit) when the request can never be
        served (a guide that does not compile included), :class:`QueueFullError` when
        ``max_queue_size`` requests already wait (retry later), and RuntimeError once the engine
        is shut down.
        """
        check_fits(request, self.config, self.runner.vocab_size)
        matcher = self.guided.matcher(request.guide)  # compiled here, never in the step
        with self._cond:
            if self._stopping:
                raise RuntimeError("engine: shut down, not accepting requests")
            self._admit()
            if request.request_id in self._live:
                raise ValueError(f"request_id: {request.request_id!r} is already in flight")
            seq = Sequence(self._next_seq_id, request, time.time_ns(), on_output, is_cancelled)
            seq.matcher = matcher
            self._stats.guided_requests += matcher is not None
            self._next_seq_id += 1
            self._live[request.request_id] = seq
            self._inbox.append(seq)
            self._cond.notify()

    def _admit(self) -> None:
        """Refuse a request when the queue is full (caller holds the lock). Requests that will
        take a free batch slot at the next step do not count as queued."""
        limit = self.config.max_queue_size
        free_slots = max(0, self.config.max_batch_size - len(self.scheduler.running))
        waiting = max(0, len(self.scheduler.waiting) + len(self._inbox) - free_slots)
        if limit and waiting >= limit:
            self._stats.rejected += 1
            raise QueueFullError(limit, waiting)

    def cancel(self, request_id: str) -> bool:
        """Cancel a request: its cache is freed before the next step and a final output with
        ``finish_reason="cancelled"`` is sent. False when no such request is in flight."""
        with self._cond:
            if request_id not in self._live:
                return False
            self._cancel_ids.add(request_id)
            self._cond.notify()
            return True

    def stats(self) -> EngineStats:
        """A snapshot of the counters (a copy; safe to keep)."""
        with self._cond:
            return EngineStats(**vars(self._stats))

    def shutdown(self, timeout: float | None = 30.0) -> None:
        """Stop the loop; requests still in flight get a final ``cancelled`` output."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
            thread = self._thread
        if thread is not None:
            thread.join(timeout)
        self._thread = None
        self._drain_inbox()
        for seq in list(self.scheduler.waiting) + list(self.scheduler.running):
            self._finish(seq, "cancelled", error="engine shut down")

    def generate(self, requests: list[GenerationRequest],
                 timeout: float | None = None) -> list[list[GenerationOutput]]:
        """Submit ``requests``, wait for all to finish, return each one's outputs in order."""
        self.start()
        outputs: list[list[GenerationOutput]] = [[] for _ in requests]
        done = [threading.Event() for _ in requests]
        for i, request in enumerate(requests):
            self.submit(request, self._collector(outputs[i], done[i]))
        deadline = None if timeout is None else time.monotonic() + timeout
        for event in done:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not event.wait(left):
                raise TimeoutError(f"generate: not finished within {timeout} s")
        return outputs

    @staticmethod
    def _collector(sink: list[GenerationOutput], done: threading.Event) -> OutputCallback:
        def on_output(output: GenerationOutput) -> None:
            sink.append(output)
            if output.finished:
                done.set()
        return on_output

    # ---- the loop ------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._loop()
        except BaseException as exc:
            if self.on_fatal is not None:
                self.on_fatal(exc)
            raise

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._stopping and not self._has_work_locked():
                    self._cond.wait()
                if self._stopping:
                    return
            try:
                self.step()
            except Exception as exc:  # a bug in the step itself: fail what it held, keep serving
                log.exception("engine step failed")
                for seq in list(self.scheduler.running) + list(self.scheduler.waiting):
                    self._finish(seq, "error", error=f"engine step failed: {exc!r}")

    def _has_work_locked(self) -> bool:
        return bool(self._inbox or self._cancel_ids or self.scheduler.has_work())

    def step(self) -> None:
        """One engine step: intake, cancellations, schedule, forward, sample, postprocess.

        Called by the background loop; call it directly only when the loop is not started.
        """
        self._step_clock = time.perf_counter()
        self._drain_inbox()
        self._apply_cancellations()
        if self.speculator is not None:
            self.speculator.propose(self.scheduler.running, self.config.max_seq_len)
        batch = self.scheduler.schedule()
        if batch is not None:
            self._count_step(batch)  # before outputs go out, so callbacks see this step
            self._run_batch(batch)
        with self._cond:
            self._refresh_cache_stats()
            if batch is not None:
                self._clock_step()

    def _drain_inbox(self) -> None:
        with self._cond:
            new, self._inbox = self._inbox, []
        for seq in new:
            self.scheduler.add(seq)

    def _apply_cancellations(self) -> None:
        with self._cond:
            cancel_ids, self._cancel_ids = self._cancel_ids, set()
        now = time.time_ns()
        for seq in list(self.scheduler.waiting) + list(self.scheduler.running):
            if seq.request.request_id in cancel_ids or self._client_cancelled(seq):
                self._finish(seq, "cancelled")
            elif _expired(seq, now):
                self._finish(seq, "timeout", error=f"timeout: {TIMEOUT_MARK} "
                             f"{seq.request.timeout_s:g} s expired after {seq.num_generated} "
                             "generated tokens")

    def _client_cancelled(self, seq: Sequence) -> bool:
        if seq.is_cancelled is None:
            return False
        try:
            return bool(seq.is_cancelled())
        except Exception as exc:  # a broken check fails its own request only
            seq.error = f"is_cancelled raised {exc!r}"
            return True

    def _run_batch(self, batch: ScheduledBatch) -> None:
        now = time.time_ns()
        for seq in batch.seqs:
            seq.first_scheduled_time_ns = seq.first_scheduled_time_ns or now
        sampled = [(seq, n) for seq, n in zip(batch.seqs, batch.num_logits) if n]
        try:
            self.runner.set_threads(self.threads.threads())
            start = time.perf_counter()
            logits = self.runner.forward(batch)
            seconds = time.perf_counter() - start
            self.threads.record(seconds, len(batch.input_ids))
            with self._cond:  # step time too: the outputs sent next carry consistent stats
                self._stats.forward_seconds += seconds
                self._clock_step()
            self.scheduler.commit(batch)  # its K/V are written: reusable from now on
            choices = iter(self._sample(logits, [s for s, n in sampled for _ in range(n)]))
        except Exception as exc:
            log.exception("forward step failed; failing its %d requests", batch.num_rows)
            for seq in batch.seqs:
                self._finish(seq, "error", error=f"forward step failed: {exc!r}")
            return
        now = time.time_ns()
        for seq, n in sampled:
            row = [next(choices) for _ in range(n)]
            if seq.draft_ids:
                self._verify(seq, row, now)
            else:
                self._postprocess(seq, row[0], now)

    def _sample(self, logits, seqs: list[Sequence]) -> list:
        ends = [self._end_ids(seq.request) for seq in seqs]
        return self.sampler.sample(logits, seqs, ends)

    def _end_ids(self, request: GenerationRequest) -> list[int]:
        if request.end_id is None:
            return self.runner.eos_token_ids
        return [] if request.end_id == -1 else [request.end_id]

    # ---- postprocess ---------------------------------------------------------------------

    def _postprocess(self, seq: Sequence, choice, now: int) -> None:
        """Append the new token (a sampler ``Choice``), decide whether the request is done,
        emit its output."""
        try:
            reason = self._append(seq, choice, now)
            if reason is not None:
                self._finish(seq, reason)
            elif seq.request.streaming:
                self._emit(seq, finished=False)
        except Exception as exc:
            log.exception("request %s failed", seq.request.request_id)
            self._finish(seq, "error", error=repr(exc))

    def _verify(self, seq: Sequence, choices: list, now: int) -> None:
        """A speculative row: append the target's tokens while the drafts equal them, then
        the first that differs (or the one after the last draft); emit once."""
        drafts, seq.draft_ids = seq.draft_ids, []
        accepted, reason = 0, None
        try:
            accepted, reason = accept(drafts, choices, lambda c: self._append(seq, c, now))
        except Exception as exc:
            log.exception("request %s failed", seq.request.request_id)
            reason, seq.error = "error", repr(exc)
        with self._cond:
            self._stats.count_draft(len(drafts), accepted)
        seq.num_draft_tokens += len(drafts)
        seq.num_accepted_draft_tokens += accepted
        self.speculator.record(seq, len(drafts), accepted)
        if reason is not None:
            return self._finish(seq, reason)
        seq.num_computed_tokens = seq.num_tokens - 1  # the rejected drafts' K/V are stale
        self.scheduler.commit_seq(seq)
        if seq.request.streaming:
            self._emit(seq, finished=False)

    def _append(self, seq: Sequence, choice, now: int) -> str | None:
        """Add the token unless it ends the request; the finish reason or None."""
        request, token = seq.request, choice.token
        if seq.matcher is not None:
            if not seq.matcher.accept(token):
                raise RuntimeError(f"guided decoding: the grammar refused token {token}")
            if seq.matcher.is_terminated:  # a complete output, ended by the model's end token
                seq.last_token_time_ns = now
                return "end_id"
        if token in self._end_ids(request):
            seq.last_token_time_ns = now
            return "end_id"
        seq.append_token(token, choice.log_prob, now, choice.top)
        with self._cond:
            self._stats.generated_tokens += 1
        if seq.num_generated >= request.sampling.min_tokens and self._hit_stop_word(seq):
            return "stop_words"
        if seq.num_generated >= request.max_new_tokens:
            return "length"
        return None

    @staticmethod
    def _hit_stop_word(seq: Sequence) -> bool:
        generated = seq.generated_ids
        return any(len(word) <= len(generated) and generated[-len(word):] == word
                   for word in seq.request.stop_words)

    def _finish(self, seq: Sequence, reason: str, error: str | None = None) -> None:
        """Free the request's cache now, count it, send its final output."""
        self.scheduler.remove(seq)
        self.sampler.release(seq.seq_id)
        if self.speculator is not None:
            self.speculator.release(seq.seq_id)
        seq.matcher, seq.draft_ids = None, []
        seq.finish_reason = reason
        if error is not None:
            seq.error = error
        with self._cond:
            self._live.pop(seq.request.request_id, None)
            counter = {"cancelled": "cancelled", "timeout": "cancelled",
                       "error": "failed"}.get(reason, "completed")
            setattr(self._stats, counter, getattr(self._stats, counter) + 1)
            self._refresh_cache_stats()  # the freed capacity shows before the final output
        try:
            self._emit(seq, finished=True)
        except Exception:  # the caller's callback failed on the final output: nothing to tell
            log.exception("on_output failed for request %s", seq.request.request_id)

    def _emit(self, seq: Sequence, finished: bool) -> None:
        if seq.on_output is not None:
            seq.on_output(self._output(seq, finished))

    def _output(self, seq: Sequence, finished: bool) -> GenerationOutput:
        """Streaming: the tokens since the last output. Otherwise: the whole result."""
        request = seq.request
        if request.streaming:
            start = seq.num_prompt_tokens + seq.num_emitted_tokens
            tokens, log_probs = seq.token_ids[start:], seq.log_probs[seq.num_emitted_tokens:]
            top = seq.top_log_probs[seq.num_emitted_tokens:]
        else:
            tokens, log_probs = list(seq.generated_ids), list(seq.log_probs)
            top = list(seq.top_log_probs)
            if not request.exclude_input_in_output:
                tokens = seq.token_ids[:]
        seq.num_emitted_tokens = seq.num_generated
        held = len(self.scheduler.block_manager.block_table(seq.seq_id))
        seq.kv_cache_blocks = max(seq.kv_cache_blocks, held)
        return GenerationOutput(
            request_id=request.request_id, token_ids=tokens,
            log_probs=log_probs if request.return_log_probs else [], top_log_probs=top,
            cum_log_prob=seq.cum_log_prob, finished=finished,
            finish_reason=seq.finish_reason if finished else None,
            error=seq.error if finished else None,
            arrival_time_ns=seq.arrival_time_ns,
            first_scheduled_time_ns=seq.first_scheduled_time_ns,
            first_token_time_ns=seq.first_token_time_ns,
            last_token_time_ns=seq.last_token_time_ns,
            num_input_tokens=seq.num_prompt_tokens, num_output_tokens=seq.num_generated,
            kv_cache_blocks=seq.kv_cache_blocks, kv_cache_reused_blocks=seq.num_reused_blocks,
            total_draft_tokens=seq.num_draft_tokens,
            total_accepted_draft_tokens=seq.num_accepted_draft_tokens)

    # ---- stats ---------------------------------------------------------------------------

    def _count_step(self, batch: ScheduledBatch) -> None:
        with self._cond:
            self._stats.count_step(batch, len(self.scheduler.running))
            self._refresh_cache_stats()

    def _clock_step(self) -> None:
        """Add the step's time since the last call to ``step_seconds`` (caller holds the lock)."""
        now = time.perf_counter()
        self._stats.step_seconds += now - self._step_clock
        self._step_clock = now

    def _refresh_cache_stats(self) -> None:
        """Copy queue lengths and cache capacity into the stats (caller holds the lock)."""
        self._stats.copy_state(self.scheduler, len(self._inbox), self.sampler.mask_seconds)


def _expired(seq: Sequence, now_ns: int) -> bool:
    timeout = seq.request.timeout_s
    return timeout is not None and now_ns - seq.arrival_time_ns >= timeout * 1e9
