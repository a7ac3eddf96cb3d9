"""The CPU ``tensorrt_llm`` step: Triton tensors <-> :mod:`tritonllm.engine`.

Inputs and outputs are those of ``tritonllm.contract.TENSORRT_LLM`` (the names of TensorRT-LLM's
Triton backend), one request at a time, as numpy arrays with the batch dimension first. Outputs:
``output_ids`` INT32 [1, beam=1, len] (new tokens when streaming; prompt + generated otherwise,
or generated only with ``exclude_input_in_output``), ``sequence_length`` INT32 [1, 1],
``cum_log_probs`` FP32 [1, 1], ``output_log_probs`` FP32 [1, 1, len], ``batch_index`` and
``sequence_index`` INT32 [1, 1] (always 0: one sequence per request), and, when asked,
``*_time_ns`` INT64 [1, 1] and ``num_input_tokens`` / ``num_output_tokens`` INT32 [1, 1].
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from tritonllm import contract
from tritonllm.engine import EngineConfig, GenerationOutput, GenerationRequest, SamplingParams
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


def engine_config(params: dict[str, str]) -> EngineConfig:
    """An EngineConfig from the model's string parameters; absent keys keep their defaults."""
    values = {}
    for f in dataclasses.fields(EngineConfig):
        if f.init and f.name in params:
            values[f.name] = _parse(params[f.name], type(getattr(EngineConfig(), f.name)), f.name)
    return EngineConfig(**values)


def engine_parameters(config: EngineConfig) -> dict[str, str]:
    """The inverse of :func:`engine_config`: what the renderer writes into config.pbtxt."""
    return {f.name: str(getattr(config, f.name)).lower() if isinstance(getattr(config, f.name), bool)
            else str(getattr(config, f.name))
            for f in dataclasses.fields(EngineConfig) if f.init}


def _parse(text: str, kind: type, name: str):
    if kind is bool:
        if text.lower() not in ("true", "false", "1", "0"):
            raise ValueError(f"parameter {name}: expected true or false, got {text!r}")
        return text.lower() in ("true", "1")
    try:
        return kind(text)
    except ValueError:
        raise ValueError(f"parameter {name}: expected {kind.__name__}, got {text!r}") from None


@dataclass(frozen=True)
class Wants:
    """Which optional outputs a request asked for."""

    log_probs: bool = False
    perf: bool = False
    num_input_tokens: bool = False
    num_output_tokens: bool = False


def parse_request(engine_request_id: str, inputs: dict[str, np.ndarray]) -> tuple[GenerationRequest, Wants]:
    """Validate one Triton request's inputs and build the engine request."""
    _refuse_unsupported(inputs)
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
        sampling=SamplingParams(**_sampling_values(inputs)),
        end_id=_optional_int(inputs, "end_id"),
        pad_id=_optional_int(inputs, "pad_id"),
        stop_words=_words(inputs, "stop_words_list"),
        bad_words=_words(inputs, "bad_words_list"),
        streaming=bool(_scalar(inputs, "streaming", False)),
        exclude_input_in_output=bool(_scalar(inputs, "exclude_input_in_output", False)),
        return_log_probs=bool(_scalar(inputs, "return_log_probs", False)),
    )
    wants = Wants(
        log_probs=request.return_log_probs,
        perf=bool(_scalar(inputs, "return_perf_metrics", False)),
        num_input_tokens=bool(_scalar(inputs, "return_num_input_tokens", False)),
        num_output_tokens=bool(_scalar(inputs, "return_num_output_tokens", False)),
    )
    return request, wants


def output_tensors(output: GenerationOutput, wants: Wants) -> dict[str, np.ndarray]:
    ids = np.asarray(output.token_ids, dtype=np.int32).reshape(1, 1, -1)
    log_probs = np.asarray(output.log_probs if wants.log_probs else [], dtype=np.float32)
    tensors = {
        "output_ids": ids,
        "sequence_length": np.array([[ids.shape[-1]]], dtype=np.int32),
        "cum_log_probs": np.array([[output.cum_log_prob]], dtype=np.float32),
        "output_log_probs": log_probs.reshape(1, 1, -1),
        "batch_index": np.zeros((1, 1), dtype=np.int32),
        "sequence_index": np.zeros((1, 1), dtype=np.int32),
    }
    if wants.perf:
        for name in contract.PERF_OUTPUTS:
            tensors[name] = np.array([[getattr(output, name)]], dtype=np.int64)
    if wants.num_input_tokens:
        tensors["num_input_tokens"] = np.array([[output.num_input_tokens]], dtype=np.int32)
    if wants.num_output_tokens:
        tensors["num_output_tokens"] = np.array([[output.num_output_tokens]], dtype=np.int32)
    return tensors


def stop_requested(inputs: dict[str, np.ndarray]) -> bool:
    """TensorRT-LLM's ``stop`` input: cancel the running request that has this request id."""
    return bool(_scalar(inputs, "stop", False))


def _refuse_unsupported(inputs: dict[str, np.ndarray]) -> None:
    for name in contract.TENSORRT_LLM.unsupported_inputs:
        if name in inputs:
            raise InvalidInputError(f"{_public(name)}: not supported by this deployment yet")
    for name, only in contract.SINGLE_VALUE_ONLY.items():
        value = _scalar(inputs, name, only)
        if int(value) != only:
            raise InvalidInputError(f"{_public(name)}: only {only} is supported, got {int(value)}")
    for name in contract.FALSE_ONLY:
        if bool(_scalar(inputs, name, False)):
            raise InvalidInputError(f"{_public(name)}: not supported by the CPU engine")


def _sampling_values(inputs: dict[str, np.ndarray]) -> dict:
    values = {}
    for tensor_name, field_name in _SAMPLING_FIELDS.items():
        value = _scalar(inputs, tensor_name)
        if value is not None:
            values[field_name] = value.item()
    return values


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
