"""The CPU ``tensorrt_llm`` step: Triton tensors <-> :mod:`tritonllm.engine`.

Inputs and outputs are those of ``tritonllm.contract.TENSORRT_LLM`` (the names of TensorRT-LLM's
Triton backend), one request at a time, as numpy arrays with the batch dimension first. Values
mean what the backend makes of them (``docs/compatibility.md`` has the audit): ``top_p <= 0``
and ``top_k == 0`` are unset, and with neither set decoding is greedy whatever the
temperature; ``seed`` defaults to 0; an absent ``end_id`` means no token ends generation; ``exclude_input_in_output`` defaults to the model parameter (false).

Outputs, as the backend sends them: ``output_ids`` INT32 [1, beam=1, len] (new tokens when
streaming; prompt + generated otherwise, or generated only with ``exclude_input_in_output``),
``sequence_length`` INT32 [1, 1]; with ``return_log_probs``, ``cum_log_probs`` FP32 [1, 1] and
``output_log_probs`` FP32 [1, 1, len]; with ``num_top_log_probs`` k > 0 (our extension),
``top_log_prob_ids`` INT32 and ``top_log_probs`` FP32 [1, 1, len, k]; with ``return_perf_metrics``, every response carries the
ten perf outputs [1, 1] (times are wall-clock ns); ``num_input_tokens`` / ``num_output_tokens``
INT32 [1, 1] when asked (our extension). ``batch_index`` / ``sequence_index`` are not sent: the
backend sends them only for batch > 1 / several sequences, which the CPU engine refuses.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable

import numpy as np

from tritonllm import contract
from tritonllm.defaults import ABANDONED_STREAM_TIMEOUT_MS
from tritonllm.engine import GenerationOutput, GenerationRequest, SamplingParams
from tritonllm.engine.guided import Guide
from tritonllm.tokenizer import InvalidInputError, from_word_list_format

# tensorrt_llm input -> SamplingParams field.
_SAMPLING_FIELDS = {
    "temperature": "temperature",
    "runtime_top_k": "top_k",
    "runtime_top_p": "top_p",
    "seed": "seed",
    "repetition_penalty": "repetition_penalty",
    "presence_penalty": "presence_penalty",
    "frequency_penalty": "frequency_penalty",
    "min_tokens": "min_tokens",
}
_TO_ENSEMBLE = {engine: name for name, engine in contract.ENGINE_NAME_FOR.items()}

# TensorRT-LLM's defaults for absent inputs (its executor's DefaultDecodingParams).
# ``min_tokens`` keeps our default of 0, not the executor's 1 (docs/compatibility.md: greedy
# output then equals transformers', which may end on the first token).
DEFAULT_SEED = 0
NO_END_ID = -1  # the backend's value when end_id is absent: no token ends generation


STREAMING_NEEDS_DECOUPLED = ("streaming: streaming is only supported if the model is deployed "
                             "in decoupled mode (tritonllm serve --decoupled)")


@dataclass(frozen=True)
class StepSettings:
    """Per-deployment facts the step needs: whether the model is decoupled (responses may
    stream), the ``exclude_input_in_output`` model parameter (the default for requests),
    ``stream_interval`` (see :class:`StreamShaper`) and ``cancellation_check_period_ms`` (how
    often a running request asks Triton whether it was cancelled; TensorRT-LLM's backend
    parameter of the same name, default 100). ``abandoned_stream_timeout_ms``: a streamed
    request whose responses postprocessing has not acknowledged for this long is stopped, its
    ensemble having been cancelled (see tritonllm.models.delivery); 0 turns the watch off."""

    decoupled: bool = True
    exclude_input_in_output: bool = False
    stream_interval: int = 1
    cancellation_check_period_ms: int = 100
    abandoned_stream_timeout_ms: int = ABANDONED_STREAM_TIMEOUT_MS

    def __post_init__(self) -> None:
        if self.stream_interval < 1:
            raise ValueError(f"stream_interval: must be >= 1, got {self.stream_interval}")
        if self.cancellation_check_period_ms < 1:
            raise ValueError("cancellation_check_period_ms: must be >= 1, got "
                             f"{self.cancellation_check_period_ms}")
        if self.abandoned_stream_timeout_ms < 0:
            raise ValueError("abandoned_stream_timeout_ms: must be >= 0 (0: off), got "
                             f"{self.abandoned_stream_timeout_ms}")

    @classmethod
    def from_model_config(cls, config: dict) -> "StepSettings":
        """From the model config as Triton hands it to ``initialize`` (parsed JSON)."""
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        policy = config.get("model_transaction_policy", {})
        return cls(decoupled=bool(policy.get("decoupled", False)),
                   exclude_input_in_output=contract.parse_bool(
                       params.get("exclude_input_in_output", "false"), "exclude_input_in_output"),
                   stream_interval=int(params.get("stream_interval", "1")),
                   cancellation_check_period_ms=int(params.get(
                       "cancellation_check_period_ms", cls.cancellation_check_period_ms)),
                   abandoned_stream_timeout_ms=int(params.get(
                       "abandoned_stream_timeout_ms", cls.abandoned_stream_timeout_ms)))


@dataclass(frozen=True)
class Wants:
    """Which optional outputs a request asked for."""

    log_probs: bool = False
    top_log_probs: int = 0
    perf: bool = False
    num_input_tokens: bool = False
    num_output_tokens: bool = False
    preceding_ids: bool = False  # streaming requests get it (see StreamShaper)


def parse_request(engine_request_id: str, inputs: dict[str, np.ndarray],
                  settings: StepSettings = StepSettings(),
                  timeout_us: int = 0) -> tuple[GenerationRequest, Wants]:
    """Validate one Triton request's inputs and build the engine request. ``timeout_us``:
    Triton's per-request timeout (``request.timeout()``; 0: none), in microseconds."""
    _refuse_unsupported(inputs)
    streaming = bool(_scalar(inputs, "streaming", False))
    if streaming and not settings.decoupled:
        raise InvalidInputError(STREAMING_NEEDS_DECOUPLED)
    if len(_flat(inputs["input_lengths"])) != 1:
        raise InvalidInputError("input_ids: the CPU engine takes one sequence per request "
                                f"(batch size 1), got {len(_flat(inputs['input_lengths']))}")
    length = int(_flat(inputs["input_lengths"])[0])
    ids = _flat(inputs["input_ids"])
    if not 0 < length <= len(ids):
        raise InvalidInputError(f"input_lengths: {length} is not in [1, {len(ids)}] "
                                "(the number of input_ids sent)")
    request = GenerationRequest(
        request_id=engine_request_id,
        prompt_ids=ids[:length].tolist(),
        max_new_tokens=int(_scalar(inputs, "request_output_len")),
        sampling=_sampling(inputs),
        end_id=int(_scalar(inputs, "end_id", NO_END_ID)),
        pad_id=_optional_int(inputs, "pad_id"),
        stop_words=_words(inputs, "stop_words_list"),
        bad_words=_words(inputs, "bad_words_list"),
        streaming=streaming,
        exclude_input_in_output=bool(_scalar(inputs, "exclude_input_in_output",
                                             settings.exclude_input_in_output)),
        return_log_probs=bool(_scalar(inputs, "return_log_probs", False)),
        timeout_s=timeout_us / 1e6 if timeout_us else None,
        guide=_guide(inputs),
        num_top_log_probs=int(_scalar(inputs, "num_top_log_probs", 0)),
    )
    wants = Wants(
        log_probs=request.return_log_probs,
        top_log_probs=request.num_top_log_probs,
        perf=bool(_scalar(inputs, "return_perf_metrics", False)),
        num_input_tokens=bool(_scalar(inputs, "return_num_input_tokens", False)),
        num_output_tokens=bool(_scalar(inputs, "return_num_output_tokens", False)),
        preceding_ids=streaming,
    )
    return request, wants


def output_tensors(output: GenerationOutput, wants: Wants,
                   preceding: list[int] = ()) -> dict[str, np.ndarray]:
    """One response's tensors. Streaming responses also carry our additive output
    ``preceding_ids`` [1, 1, <= PRECEDING_WINDOW] (length 0 in the first), see
    :class:`StreamShaper`."""
    ids = np.asarray(output.token_ids, dtype=np.int32).reshape(1, 1, -1)
    tensors = {
        "output_ids": ids,
        "sequence_length": np.array([[ids.shape[-1]]], dtype=np.int32),
    }
    if wants.preceding_ids:
        tensors[contract.PRECEDING_IDS] = np.asarray(preceding, dtype=np.int32).reshape(1, 1, -1)
    if wants.log_probs:
        tensors["cum_log_probs"] = np.array([[output.cum_log_prob]], dtype=np.float32)
        tensors["output_log_probs"] = np.asarray(output.log_probs,
                                                 dtype=np.float32).reshape(1, 1, -1)
    if wants.top_log_probs:
        shape = (1, 1, len(output.top_log_probs), wants.top_log_probs)
        tensors[contract.TOP_LOG_PROB_IDS] = np.array(
            [[i for i, _ in top] for top in output.top_log_probs], dtype=np.int32).reshape(shape)
        tensors[contract.TOP_LOG_PROBS] = np.array(
            [[p for _, p in top] for top in output.top_log_probs],
            dtype=np.float32).reshape(shape)
    if wants.perf:
        tensors.update(_perf_tensors(output))
    if wants.num_input_tokens:
        tensors["num_input_tokens"] = np.array([[output.num_input_tokens]], dtype=np.int32)
    if wants.num_output_tokens:
        tensors["num_output_tokens"] = np.array([[output.num_output_tokens]], dtype=np.int32)
    return tensors


def _perf_tensors(output: GenerationOutput) -> dict[str, np.ndarray]:
    values = {
        "kv_cache_alloc_new_blocks": output.kv_cache_blocks - output.kv_cache_reused_blocks,
        "kv_cache_reused_blocks": output.kv_cache_reused_blocks,
        "kv_cache_alloc_total_blocks": output.kv_cache_blocks,
        "arrival_time_ns": output.arrival_time_ns,
        "first_scheduled_time_ns": output.first_scheduled_time_ns,
        "first_token_time_ns": output.first_token_time_ns,
        "last_token_time_ns": output.last_token_time_ns,
        "acceptance_rate": output.total_accepted_draft_tokens / output.total_draft_tokens
        if output.total_draft_tokens else 0.0,
        "total_accepted_draft_tokens": output.total_accepted_draft_tokens,
        "total_draft_tokens": output.total_draft_tokens,
    }
    return {name: np.array([[values[name]]], dtype=contract.NUMPY_DTYPES[dtype])
            for name, dtype in contract.PERF_OUTPUTS}


def stop_requested(inputs: dict[str, np.ndarray]) -> bool:
    """TensorRT-LLM's ``stop`` input: cancel the running request that has this request id."""
    return bool(_scalar(inputs, "stop", False))


def _refuse_unsupported(inputs: dict[str, np.ndarray]) -> None:
    for name in contract.TENSORRT_LLM.unsupported_inputs:
        if name in inputs:
            raise InvalidInputError(f"{_public(name)}: not supported by this deployment yet")
    if np.asarray(inputs.get("embedding_bias", ())).size:
        raise InvalidInputError("embedding_bias: not supported by the CPU engine "
                                "(an empty tensor, as preprocessing sends, is accepted)")
    for name, only in contract.SINGLE_VALUE_ONLY.items():
        value = _scalar(inputs, name, only)
        if int(value) != only:
            raise InvalidInputError(f"{_public(name)}: only {only} is supported, got {int(value)}")
    for name in contract.FALSE_ONLY:
        if bool(_scalar(inputs, name, False)):
            raise InvalidInputError(f"{_public(name)}: not supported by the CPU engine")


def _sampling(inputs: dict[str, np.ndarray]) -> SamplingParams:
    """The request's sampling, with the backend's meaning of absent and zero values."""
    values = {"seed": DEFAULT_SEED}
    for tensor_name, field_name in _SAMPLING_FIELDS.items():
        value = _scalar(inputs, tensor_name)
        if value is not None:
            values[field_name] = value.item()
    if values.get("top_p") is not None and values["top_p"] <= 0:
        values["top_p"] = None  # the backend treats top_p <= 0 as unset
    params = SamplingParams(**values)  # validates every value, temperature included
    if not params.top_k and params.top_p is None:
        # Neither top-k nor top-p: the backend decodes greedily whatever the temperature.
        params = dataclasses.replace(params, temperature=None)
    return params


def _guide(inputs: dict[str, np.ndarray]) -> Guide | None:
    """TensorRT-LLM's guided-decoding inputs. The backend ignores a guide whose type it does not
    know, or a guide without a type; the CPU engine refuses both, naming the input."""
    kind, text = _text(inputs, "guided_decoding_guide_type"), _text(inputs, "guided_decoding_guide")
    if kind is None:
        if text:
            raise InvalidInputError("guided_decoding_guide: sent without "
                                    "guided_decoding_guide_type")
        return None
    try:
        return Guide(kind, text or "")
    except ValueError as exc:
        raise InvalidInputError(str(exc)) from None


def _text(inputs: dict[str, np.ndarray], name: str) -> str | None:
    value = _scalar(inputs, name)
    if value is None:
        return None
    try:
        return value.decode("utf-8") if isinstance(value, bytes) else str(value)
    except UnicodeDecodeError:
        raise InvalidInputError(f"{name}: must be UTF-8 text") from None


def _words(inputs: dict[str, np.ndarray], name: str) -> list[list[int]]:
    if name not in inputs:
        return []
    array = np.asarray(inputs[name])
    return from_word_list_format(array[0] if array.ndim == 3 else array)


def _public(engine_name: str) -> str:
    """The ensemble's name for an engine input, for error messages users can act on."""
    return _TO_ENSEMBLE.get(engine_name, engine_name)


def _flat(value: np.ndarray) -> np.ndarray:
    return np.asarray(value).reshape(-1)


def _scalar(inputs: dict[str, np.ndarray], name: str, default=None):
    if name not in inputs:
        return default
    flat = _flat(inputs[name])
    if len(flat) != 1:
        raise InvalidInputError(f"{_public(name)}: expected one value per request, got {len(flat)}")
    return flat[0]


def _optional_int(inputs: dict[str, np.ndarray], name: str) -> int | None:
    value = _scalar(inputs, name)
    return None if value is None else int(value)


# --- streamed responses: stream_interval and the detokenizer's window ------------------------

# Generated ids sent before each streamed response's own (``preceding_ids``): enough left
# context for postprocessing to decode the response's text delta exactly without keeping any
# state (a character spans at most 4 byte tokens; spacing needs one token before the word).
PRECEDING_WINDOW = 8


class StreamShaper:
    """Shapes one request's engine outputs into the responses sent to Triton.

    ``stream_interval`` (TensorRT-LLM's LLM-API name and meaning, a deployment setting): after
    the first token, which goes out at once (time to first token is unchanged), a streaming
    request gets a response every N generated tokens instead of every token; the final response
    always goes out. Held outputs merge into one (token ids and log-probs concatenated, the
    rest from the latest). After each :meth:`shape` that returns an output, ``preceding`` holds
    up to ``PRECEDING_WINDOW`` generated ids sent before it (none for the first response): from
    them postprocessing decodes the response's text delta exactly, keeping no state.
    A non-streaming request's single output passes through with no preceding ids.
    """

    def __init__(self, stream_interval: int = 1):
        if stream_interval < 1:
            raise ValueError(f"stream_interval: must be >= 1, got {stream_interval}")
        self.stream_interval = stream_interval
        self.preceding: list[int] = []
        self._held: list[GenerationOutput] = []
        self._sent: list[int] | None = None  # the last PRECEDING_WINDOW ids sent; None: none yet

    def shape(self, output: GenerationOutput) -> GenerationOutput | None:
        """The output to send now, or None to hold it back."""
        self._held.append(output)
        held_tokens = sum(len(o.token_ids) for o in self._held)
        if self._sent is not None and not output.finished and held_tokens < self.stream_interval:
            return None
        merged = _merge(self._held)
        self._held = []
        self.preceding = self._sent or []
        self._sent = (self.preceding + merged.token_ids)[-PRECEDING_WINDOW:]
        return merged


def shaped(shaper: StreamShaper, send: Callable[[GenerationOutput], None]):
    """An engine ``on_output`` callback: ``send`` only what ``shaper`` lets through."""
    def on_output(output: GenerationOutput) -> None:
        ready = shaper.shape(output)
        if ready is not None:
            send(ready)
    return on_output


def _merge(outputs: list[GenerationOutput]) -> GenerationOutput:
    if len(outputs) == 1:
        return outputs[0]
    return dataclasses.replace(
        outputs[-1], token_ids=[t for o in outputs for t in o.token_ids],
        log_probs=[p for o in outputs for p in o.log_probs],
        top_log_probs=[top for o in outputs for top in o.top_log_probs])
