"""Requests, outputs and per-request engine state. Plain Python: no torch import.

Output semantics follow TensorRT-LLM's Triton backend:

- streaming: one ``GenerationOutput`` per step that produced tokens, holding only the NEW
  tokens since the previous output (never the prompt); the last one has ``finished=True``
  (its ``token_ids`` may be empty, e.g. when the request ended on ``end_id``).
- non-streaming: exactly ONE output, at the end, holding prompt + generated tokens, or only the
  generated tokens when ``exclude_input_in_output``.
- the ``end_id`` token is never part of the output; the tokens of a matched stop word are.
- ``min_tokens``: ``end_id`` is masked and stop words are not matched until that many tokens
  have been generated.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass, field
from enum import Enum
from typing import Callable

from tritonllm.engine.config import EngineConfig
from tritonllm.engine.guided import Guide

FINISH_REASONS = ("length", "end_id", "stop_words", "cancelled", "timeout", "error")
MAX_SEED = 2**64 - 1
MAX_TOP_LOG_PROBS = 20  # most alternatives returned per token (OpenAI's top_logprobs limit)


def _int_list(name: str, values) -> list[int]:
    """``values`` as a list of Python ints, or ValueError naming ``name``."""
    try:
        return [operator.index(v) for v in values]
    except TypeError as exc:
        raise ValueError(f"{name}: must be a list of integer token ids ({exc})") from None


def _word_lists(name: str, words) -> list[list[int]]:
    """Stop/bad words: a list of non-empty token-id lists, ids >= 0."""
    if isinstance(words, (str, bytes)):
        raise ValueError(f"{name}: must be a list of token-id lists, got a string")
    lists = [_int_list(name, word) for word in words]
    for word in lists:
        if not word:
            raise ValueError(f"{name}: each word must hold at least 1 token id, got []")
        if min(word) < 0:
            raise ValueError(f"{name}: token ids must be >= 0, got {min(word)}")
    return lists


@dataclass(frozen=True)
class SamplingParams:
    """How to pick each token. The default is greedy, as in TensorRT-LLM.

    Sampling happens only when asked: ``temperature`` not in (None, 1.0), or ``top_k`` > 1, or
    ``top_p`` set. ``temperature == 0`` or ``top_k == 1`` is greedy. ``top_k`` 0/None means no
    top-k cut; ``top_p`` None means no nucleus cut. ``seed`` makes a sampled request reproducible
    whatever else runs in the batch. ``repetition_penalty`` has Hugging Face semantics over
    prompt + generated tokens (> 1 discourages repeats); ``presence_penalty`` and
    ``frequency_penalty`` have OpenAI semantics over the generated tokens.
    """

    temperature: float | None = None
    top_k: int | None = None
    top_p: float | None = None
    seed: int | None = None
    repetition_penalty: float | None = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    min_tokens: int = 0

    def __post_init__(self) -> None:
        self._check_temperature_and_cuts()
        self._check_penalties()
        if self.seed is not None and not 0 <= self.seed <= MAX_SEED:
            raise ValueError(f"seed: must be in [0, 2**64 - 1], got {self.seed}")
        if self.min_tokens < 0:
            raise ValueError(f"min_tokens: must be >= 0, got {self.min_tokens}")

    def _check_temperature_and_cuts(self) -> None:
        t = self.temperature
        if t is not None and not (math.isfinite(t) and t >= 0):
            raise ValueError(f"temperature: must be a finite number >= 0, got {t}")
        if self.top_k is not None and self.top_k < 0:
            raise ValueError(f"top_k: must be >= 0 (0 disables it), got {self.top_k}")
        p = self.top_p
        if p is not None and not (0 < p <= 1):
            raise ValueError(f"top_p: must be in (0, 1], got {p}")

    def _check_penalties(self) -> None:
        r = self.repetition_penalty
        if r is not None and not (math.isfinite(r) and r > 0):
            raise ValueError(f"repetition_penalty: must be a finite number > 0, got {r}")
        for name in ("presence_penalty", "frequency_penalty"):
            value = getattr(self, name)
            if not math.isfinite(value):
                raise ValueError(f"{name}: must be a finite number, got {value}")

    @property
    def greedy(self) -> bool:
        """True when the arg-max token is taken (no randomness)."""
        if self.temperature == 0 or self.top_k == 1:
            return True
        return not self.top_k and self.top_p is None and self.temperature in (None, 1.0)

    @property
    def has_penalties(self) -> bool:
        """True when any penalty changes the logits."""
        return (self.repetition_penalty not in (None, 1.0) or self.presence_penalty != 0
                or self.frequency_penalty != 0)


@dataclass(frozen=True)
class GenerationRequest:
    """One generation request, as the engine's step model receives it.

    ``prompt_ids``: the tokenized prompt. ``max_new_tokens``: most tokens to generate.
    ``end_id``: the token that ends generation (not output); None means the model's EOS ids,
    -1 that no token does (TensorRT-LLM's meaning of an absent end_id).
    ``timeout_s``: the request ends, queued or running, this many seconds after it arrived
    (``finish_reason="timeout"``, its cache freed); None: no limit.
    ``pad_id``: kept for the adapter's padding; the engine never emits it.
    ``stop_words`` / ``bad_words``: token-id sequences; a stop word ends generation once the
    generated tokens end with it; a bad word's last token is banned whenever the tokens before
    it have just been produced (a single-token bad word is always banned).
    ``guide``: the grammar the output must match (guided decoding, :mod:`.guided`).
    ``num_top_log_probs``: per generated token, the most likely tokens and their
    log-probabilities under the distribution it was drawn from (0: none).
    """

    request_id: str
    prompt_ids: list[int]
    max_new_tokens: int
    sampling: SamplingParams = field(default_factory=SamplingParams)
    end_id: int | None = None
    pad_id: int | None = None
    stop_words: list[list[int]] = field(default_factory=list)
    bad_words: list[list[int]] = field(default_factory=list)
    streaming: bool = False
    timeout_s: float | None = None
    exclude_input_in_output: bool = False
    return_log_probs: bool = False
    guide: Guide | None = None
    num_top_log_probs: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.request_id, str) or not self.request_id:
            raise ValueError(f"request_id: must be a non-empty string, got {self.request_id!r}")
        object.__setattr__(self, "prompt_ids", _int_list("prompt_ids", self.prompt_ids))
        if not self.prompt_ids:
            raise ValueError("prompt_ids: the prompt is empty; it must hold at least 1 token")
        if min(self.prompt_ids) < 0:
            raise ValueError(f"prompt_ids: token ids must be >= 0, got {min(self.prompt_ids)}")
        try:
            object.__setattr__(self, "max_new_tokens", operator.index(self.max_new_tokens))
        except TypeError:
            raise ValueError(f"max_new_tokens: must be an integer, got {self.max_new_tokens!r}") from None
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens: must be >= 1, got {self.max_new_tokens}")
        object.__setattr__(self, "stop_words", _word_lists("stop_words", self.stop_words))
        object.__setattr__(self, "bad_words", _word_lists("bad_words", self.bad_words))
        if self.end_id is not None and self.end_id < -1:
            raise ValueError(f"end_id: must be >= -1 (-1: no end id), got {self.end_id}")
        if self.pad_id is not None and self.pad_id < 0:
            raise ValueError(f"pad_id: must be >= 0, got {self.pad_id}")
        if self.timeout_s is not None and not self.timeout_s > 0:
            raise ValueError(f"timeout_s: must be > 0 seconds or None, got {self.timeout_s}")
        if not 0 <= self.num_top_log_probs <= MAX_TOP_LOG_PROBS:
            raise ValueError(f"num_top_log_probs: must be in [0, {MAX_TOP_LOG_PROBS}], got "
                             f"{self.num_top_log_probs}")


@dataclass
class GenerationOutput:
    """One response for a request (see the module docstring for streaming semantics).

    ``log_probs``: log-probabilities of ``token_ids``'s generated tokens under the distribution
    they were drawn from (empty unless ``return_log_probs``); ``cum_log_prob``: their sum over
    all tokens generated so far. Times are ``time.time_ns()`` wall-clock nanoseconds (0 when the
    event has not happened). ``num_output_tokens``: generated so far (end_id not counted).
    ``kv_cache_blocks``: the most KV-cache blocks the request has held so far;
    ``kv_cache_reused_blocks``: how many of them it found cached (KV-cache reuse) when it was
    last admitted, rather than computing them.
    ``top_log_probs``: per token of ``token_ids``'s generated tokens, ``num_top_log_probs``
    ``(token_id, log_prob)`` pairs, most likely first (empty unless asked for).
    ``total_draft_tokens`` / ``total_accepted_draft_tokens``: speculative drafts verified for
    the request so far, and how many of them were accepted (TensorRT-LLM's perf metrics).
    """

    request_id: str
    token_ids: list[int]
    log_probs: list[float] = field(default_factory=list)
    top_log_probs: list[list[tuple[int, float]]] = field(default_factory=list)
    cum_log_prob: float = 0.0
    finished: bool = False
    finish_reason: str | None = None
    error: str | None = None
    arrival_time_ns: int = 0
    first_scheduled_time_ns: int = 0
    first_token_time_ns: int = 0
    last_token_time_ns: int = 0
    num_input_tokens: int = 0
    num_output_tokens: int = 0
    kv_cache_blocks: int = 0
    kv_cache_reused_blocks: int = 0
    total_draft_tokens: int = 0
    total_accepted_draft_tokens: int = 0


class SequenceStatus(Enum):
    WAITING = "waiting"
    RUNNING = "running"
    FINISHED = "finished"


class Sequence:
    """Engine state of one request: its tokens, how many have K/V in the cache, timing.

    ``token_ids`` = prompt + generated. ``num_computed_tokens`` counts the leading tokens whose
    K/V are in the cache; the scheduler computes ``token_ids[num_computed_tokens:]`` next (a
    prompt chunk, or the single newest token when decoding). Admission sets it to the length
    of the cached prefix it reuses (0 without one); preemption resets it to 0.
    """

    def __init__(self, seq_id: int, request: GenerationRequest, arrival_time_ns: int,
                 on_output: Callable[[GenerationOutput], None] | None = None,
                 is_cancelled: Callable[[], bool] | None = None) -> None:
        self.seq_id = seq_id
        self.request = request
        self.on_output = on_output
        self.is_cancelled = is_cancelled
        self.token_ids: list[int] = list(request.prompt_ids)
        self.num_prompt_tokens = len(request.prompt_ids)
        self.num_computed_tokens = 0
        self.status = SequenceStatus.WAITING
        self.log_probs: list[float] = []
        self.top_log_probs: list[list[tuple[int, float]]] = []
        self.cum_log_prob = 0.0
        self.matcher = None  # guided decoding's place in the grammar (guided.Matcher)
        self.draft_ids: list[int] = []  # this step's speculative drafts (engine.speculative)
        self.num_emitted_tokens = 0  # generated tokens already sent (streaming cursor)
        self.finish_reason: str | None = None
        self.error: str | None = None
        self.arrival_time_ns = arrival_time_ns
        self.first_scheduled_time_ns = 0
        self.first_token_time_ns = 0
        self.last_token_time_ns = 0
        self.kv_cache_blocks = 0  # the most blocks held so far
        self.num_reused_blocks = 0  # cached prefix blocks shared at the last admission
        self.num_draft_tokens = self.num_accepted_draft_tokens = 0  # speculative, so far

    def __repr__(self) -> str:
        return (f"Sequence({self.seq_id}, {self.status.value}, len={len(self.token_ids)}, "
                f"computed={self.num_computed_tokens})")

    @property
    def num_tokens(self) -> int:
        return len(self.token_ids)

    @property
    def num_generated(self) -> int:
        return len(self.token_ids) - self.num_prompt_tokens

    @property
    def generated_ids(self) -> list[int]:
        return self.token_ids[self.num_prompt_tokens:]

    @property
    def num_uncomputed(self) -> int:
        """Tokens still to run through the model before the next token can be sampled."""
        return len(self.token_ids) - self.num_computed_tokens

    @property
    def is_decoding(self) -> bool:
        """True when only the newest token is left to compute: a one-token decode row."""
        return self.num_uncomputed == 1

    @property
    def max_tokens(self) -> int:
        """Prompt + max_new_tokens: the most tokens this sequence will ever hold."""
        return self.num_prompt_tokens + self.request.max_new_tokens

    def append_token(self, token_id: int, log_prob: float, now_ns: int,
                     top: list[tuple[int, float]] | None = None) -> None:
        self.token_ids.append(token_id)
        self.log_probs.append(log_prob)
        if top is not None:
            self.top_log_probs.append(top)
        self.cum_log_prob += log_prob
        self.first_token_time_ns = self.first_token_time_ns or now_ns
        self.last_token_time_ns = now_ns


def check_fits(request: GenerationRequest, config: EngineConfig, vocab_size: int) -> None:
    """The engine's limits for ``request`` (which checked its own fields when it was made): a
    ValueError names the field and the limit."""
    prompt_len = len(request.prompt_ids)
    if prompt_len > config.max_input_len:
        raise ValueError(f"prompt_ids: the prompt has {prompt_len} tokens, more than "
                         f"max_input_len ({config.max_input_len})")
    total = prompt_len + request.max_new_tokens
    if total > config.max_seq_len:
        raise ValueError(f"max_new_tokens: prompt ({prompt_len}) + max_new_tokens "
                         f"({request.max_new_tokens}) = {total} exceeds max_seq_len "
                         f"({config.max_seq_len})")
    if total > config.max_tokens_in_paged_kv_cache:
        raise ValueError(f"max_new_tokens: prompt + max_new_tokens = {total} tokens can never "
                         "fit the KV cache (max_tokens_in_paged_kv_cache = "
                         f"{config.max_tokens_in_paged_kv_cache})")
    _check_token_ids(request, config.max_stop_words, vocab_size)


def _check_token_ids(request: GenerationRequest, max_stop_words: int, vocab: int) -> None:
    if max(request.prompt_ids) >= vocab:
        raise ValueError(f"prompt_ids: token id {max(request.prompt_ids)} is out of range "
                         f"for the vocabulary (vocab_size = {vocab})")
    for name in ("end_id", "pad_id"):
        value = getattr(request, name)
        if value is not None and value >= vocab:
            raise ValueError(f"{name}: {value} is out of range (vocab_size = {vocab})")
    for name in ("stop_words", "bad_words"):
        words = getattr(request, name)
        if len(words) > max_stop_words:
            raise ValueError(f"{name}: {len(words)} words, more than max_stop_words "
                             f"({max_stop_words})")
        if any(max(word) >= vocab for word in words):
            raise ValueError(f"{name}: a token id is out of range (vocab_size = {vocab})")
