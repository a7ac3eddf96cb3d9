"""Engine limits and policies: one frozen dataclass, validated on construction.

The names and meanings follow TensorRT-LLM's executor config so that one build profile can
describe both the GPU engine and this CPU twin:

- ``max_batch_size``: most requests in the running batch at once (each gets work every step
  it can: one decode token, or a chunk of its prompt).
- ``max_num_tokens``: most tokens computed in one step (decode rows + prefill chunks).
- ``max_input_len`` / ``max_seq_len``: longest prompt / longest prompt + generated tokens.
- ``max_tokens_in_paged_kv_cache``: KV cache capacity in tokens, rounded up to whole blocks.
- ``tokens_per_block``: tokens in each KV-cache block (the unit of allocation and of reuse).
- ``batch_scheduler_policy``: ``guaranteed_no_evict`` admits a request only when blocks for its
  whole
  ``prompt + max_new_tokens`` can be reserved, so nothing is ever evicted;
  ``max_utilization`` admits on current need and, when blocks run out, pauses the most recently
  admitted running request (its cache is freed; it resumes later by recomputing its tokens).
- ``enable_chunked_context``: split long prompts over several steps so running streams keep
  decoding while a long prompt is prefilled.
- ``enable_kv_cache_reuse``: share the KV cache of full blocks of an identical token prefix
  between requests (a common system prompt is computed once and then read), TensorRT-LLM's
  KV-cache block reuse (its executor's ``enable_block_reuse``; the Triton backend's parameter of
  this name). Cached blocks nobody holds stay until their space is needed (least recently used
  first) and count as free capacity. On by default, as in TensorRT-LLM 1.1.
- ``num_threads``: threads of the step (torch's intra-op threads and our kernels'). 0 (the
  default): up to the CPUs this process may use (affinity mask and cgroup CPU quota), fewer
  while other processes take cores (:mod:`tritonllm.engine.threads`); N > 0: exactly N.
- ``max_stop_words``: most stop words, and most bad words, per request.
- ``max_queue_size``: most requests waiting for a batch slot (beyond the free ones); one more is
  refused at once with :class:`~tritonllm.engine.QueueFullError` (Triton's ``max_queue_size``;
  0 = no limit, TensorRT-LLM's default). Bounding the queue keeps latency bounded under
  overload: the excess is told to retry instead of timing out together with everyone else.
- ``speculative_decoding_mode``: ``off`` (the default) or ``ngram``: requests draft up to
  ``max_draft_len`` tokens by matching their last ``max_matching_ngram_size`` tokens (or fewer,
  drafting at most as many as matched) against their prompt and output, and verify them in
  one step, with the same output (greedy) or the same distribution (sampling) (TensorRT-LLM's
  n-gram speculation, its LLM API's names; :mod:`tritonllm.engine.speculative`).
  ``draft_target``: a smaller model of the same vocabulary, ``speculative_model_dir``, drafts
  ``max_draft_len`` tokens by its arg-max, with its own KV cache (TensorRT-LLM's draft-target
  speculation; :mod:`tritonllm.engine.draft_model`).
- ``weights``: how linear-layer weights are stored and multiplied. ``fp32`` (the default for
  every checkpoint but W8A16/W4A16): fp32, greedy output equal to transformers'. ``int8``: int8
  per output channel (scale = max|w| / 128, TensorRT-LLM's weight-only recipe), 4x fewer bytes
  read per step, perplexity within ~1 % (docs/cpu-engine.md, "int8 weights"); our int8 kernel
  where it builds (``cpu_kernels``), fbgemm's dynamic int8 kernels otherwise. ``int4``: int4
  with an integer scale per 32 values and an fp32 one per 256 (``Int4Linear``), lm_head in
  int8, ~7x fewer bytes than fp32; our kernels only. ``auto``: ``int8`` for a TensorRT-LLM
  W8A16 checkpoint and ``int4`` with a scale per output channel for a W4A16 one (what the GPU
  engine built from it computes with), ``fp32`` otherwise.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from tritonllm.contract import format_bool, parse_bool
from tritonllm.limits import check_limits

# TensorRT-LLM's batch_scheduler_policy values; the build profile and the renderer read them here.
SCHEDULER_POLICIES = ("guaranteed_no_evict", "max_utilization")
WEIGHT_MODES = ("auto", "fp32", "int8", "int4")
SPECULATIVE_MODES = ("off", "ngram", "draft_target")


@dataclass(frozen=True)
class EngineConfig:
    """Limits of one engine. Derived: ``num_blocks`` (KV blocks); ``max_tokens_in_paged_kv_cache``
    is rounded up to whole blocks."""

    max_batch_size: int = 8
    max_num_tokens: int = 512
    max_input_len: int = 2048
    max_seq_len: int = 4096
    max_tokens_in_paged_kv_cache: int = 8 * 4096
    tokens_per_block: int = 16
    batch_scheduler_policy: str = "guaranteed_no_evict"
    enable_chunked_context: bool = True
    enable_kv_cache_reuse: bool = True
    num_threads: int = 0
    max_stop_words: int = 64  # per request, for stop words and for bad words each
    max_queue_size: int = 32
    weights: str = "auto"
    speculative_decoding_mode: str = "off"
    max_draft_len: int = 8  # measured against 2-10 on the CPU twin (docs/performance.md)
    max_matching_ngram_size: int = 3
    speculative_model_dir: str = ""  # the draft model of draft_target
    num_blocks: int = field(init=False)

    def __post_init__(self) -> None:
        self._check_positive()
        self._check_relations()
        if not isinstance(self.max_queue_size, int) or self.max_queue_size < 0:
            raise ValueError(f"max_queue_size: must be an integer >= 0 (0: no limit), got "
                             f"{self.max_queue_size!r}")
        if self.batch_scheduler_policy not in SCHEDULER_POLICIES:
            raise ValueError(
                f"batch_scheduler_policy: {self.batch_scheduler_policy!r} is not one of "
                f"{SCHEDULER_POLICIES}"
            )
        if self.weights not in WEIGHT_MODES:
            raise ValueError(f"weights: {self.weights!r} is not one of {WEIGHT_MODES}")
        if self.speculative_decoding_mode not in SPECULATIVE_MODES:
            raise ValueError(f"speculative_decoding_mode: {self.speculative_decoding_mode!r} is "
                             f"not one of {SPECULATIVE_MODES}")
        if (self.speculative_decoding_mode == "draft_target") != bool(self.speculative_model_dir):
            raise ValueError("speculative_model_dir: a draft model's checkpoint directory is "
                             "needed with speculative_decoding_mode 'draft_target', and only "
                             f"then (mode {self.speculative_decoding_mode!r}, dir "
                             f"{self.speculative_model_dir!r})")
        num_blocks = -(-self.max_tokens_in_paged_kv_cache // self.tokens_per_block)
        object.__setattr__(self, "num_blocks", num_blocks)
        object.__setattr__(self, "max_tokens_in_paged_kv_cache", num_blocks * self.tokens_per_block)

    def _check_positive(self) -> None:
        for name in ("max_batch_size", "max_num_tokens", "max_input_len", "max_seq_len",
                     "max_tokens_in_paged_kv_cache", "tokens_per_block", "max_stop_words",
                     "max_draft_len", "max_matching_ngram_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name}: must be an integer >= 1, got {value!r}")

        if not isinstance(self.num_threads, int) or self.num_threads < 0:
            raise ValueError(f"num_threads: must be an integer >= 0 (0: automatic), got "
                             f"{self.num_threads!r}")

    def _check_relations(self) -> None:
        check_limits(max_input_len=self.max_input_len, max_seq_len=self.max_seq_len,
                     max_batch_size=self.max_batch_size, max_num_tokens=self.max_num_tokens)
        if not self.enable_chunked_context and self.max_num_tokens < self.max_input_len:
            raise ValueError(
                f"max_num_tokens: {self.max_num_tokens} must be >= max_input_len "
                f"({self.max_input_len}) when enable_chunked_context is False"
            )

    @classmethod
    def from_parameters(cls, params: dict[str, str]) -> "EngineConfig":
        """From a Triton model's string parameters; absent keys keep their defaults, other keys
        are ignored (the model has parameters of its own)."""
        defaults = cls()
        values = {f.name: _parse(params[f.name], type(getattr(defaults, f.name)), f.name)
                  for f in dataclasses.fields(cls) if f.init and f.name in params}
        return cls(**values)

    def to_parameters(self) -> dict[str, str]:
        """The inverse of :meth:`from_parameters`: what the renderer writes into config.pbtxt."""
        return {f.name: _format(getattr(self, f.name))
                for f in dataclasses.fields(self) if f.init}


def _parse(text: str, kind: type, name: str):
    if kind is bool:
        return parse_bool(text, f"parameter {name}")
    try:
        return kind(text)
    except ValueError:
        raise ValueError(f"parameter {name}: expected {kind.__name__}, got {text!r}") from None


def _format(value) -> str:
    return format_bool(value) if isinstance(value, bool) else str(value)
