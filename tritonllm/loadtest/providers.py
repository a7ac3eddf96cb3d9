"""Providers: build one request's payload and parse its responses. No Locust, no I/O.

Tensor names come from ``tritonllm.contract`` (tensorrtllm_backend's inflight_batcher_llm
names). Every request carries a unique id (``"id"`` in HTTP bodies, ``request_id`` over gRPC):
the server's streaming detokenizer keys its state on it. Every request asks the server for its
token counts (``return_num_input_tokens`` / ``return_num_output_tokens``), which are what the
metrics report.

- :class:`HttpGenerateProvider`: ``POST /v2/models/{model}/generate``, one JSON response.
- :class:`HttpStreamProvider`: ``POST /v2/models/{model}/generate_stream``, Server-Sent Events,
  one ``data: {json}`` line per response.
- :class:`GrpcEnsembleProvider`: the ``ensemble`` over gRPC's bidirectional stream (decoupled
  models answer only there, even with ``stream=false``).
- :class:`GrpcEngineProvider`: the engine model ``tensorrt_llm`` directly, with token ids, to
  separate pre/post-processing cost from the engine's.

Errors the server reports inside a response raise :class:`ServerReportedError`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from tritonllm import contract
from tritonllm.loadtest.trace import Chunk
from tritonllm.loadtest.workloads import Prompt

_FINAL_PARAMETER = "triton_final_response"


class ServerReportedError(RuntimeError):
    """The server answered with an error message instead of outputs."""


def _scalar(value):
    """Triton's JSON gives a one-element output as a scalar or a (nested) one-element list."""
    while isinstance(value, list):
        if len(value) != 1:
            raise ValueError(f"expected a single value, got a list of {len(value)}")
        value = value[0]
    return value


def _optional_int(data: dict, name: str) -> int | None:
    return int(_scalar(data[name])) if name in data else None


def ensemble_fields(prompt: Prompt, stream: bool) -> dict:
    """The ensemble's inputs for ``prompt`` as plain Python values (names from the contract)."""
    names = {t.name for t in contract.ENSEMBLE.inputs}
    fields = {
        "text_input": prompt.text,
        "max_tokens": prompt.max_tokens,
        "stream": stream,
        "exclude_input_in_output": True,
        "return_num_input_tokens": True,
        "return_num_output_tokens": True,
    }
    if prompt.min_tokens is not None:
        fields["min_tokens"] = prompt.min_tokens
    if prompt.chat:
        fields["apply_chat_template"] = True
    missing = set(fields) - names
    if missing:  # the contract moved: fail loudly rather than send unknown tensors
        raise RuntimeError(f"ensemble contract lacks inputs {sorted(missing)}")
    return fields


def request_parameters(stream: bool) -> dict:
    """Request parameters (not tensors): a streamed ensemble request asks postprocessing for
    exact incremental detokenization (see ``contract.INCREMENTAL_DETOKENIZE``)."""
    return {contract.INCREMENTAL_DETOKENIZE: True} if stream else {}


def parse_json_response(data: dict) -> Chunk:
    """One ``generate`` / ``generate_stream`` JSON object to a :class:`Chunk`."""
    if "error" in data:
        raise ServerReportedError(str(data["error"]))
    text = _scalar(data.get("text_output", ""))
    return Chunk(
        text=text if isinstance(text, str) else str(text),
        input_tokens=_optional_int(data, "num_input_tokens"),
        output_tokens=_optional_int(data, "num_output_tokens"),
    )


@dataclass(frozen=True)
class HttpGenerateProvider:
    """Non-streaming HTTP ``generate``: one request, one JSON response."""

    model: str = contract.ENSEMBLE.name
    streamed = False

    @property
    def path(self) -> str:
        return f"/v2/models/{self.model}/generate"

    def body(self, prompt: Prompt, request_id: str) -> dict:
        return {"id": request_id, **ensemble_fields(prompt, stream=False)}

    def parse(self, data: dict) -> Chunk:
        chunk = parse_json_response(data)
        return Chunk(chunk.text, (), chunk.input_tokens, chunk.output_tokens, final=True)


@dataclass(frozen=True)
class HttpStreamProvider:
    """Streaming HTTP ``generate_stream`` (SSE). :meth:`parse_line` takes one text line of the
    event stream and returns ``None`` for lines that carry no event (blank lines, comments)."""

    model: str = contract.ENSEMBLE.name
    streamed = True

    @property
    def path(self) -> str:
        return f"/v2/models/{self.model}/generate_stream"

    def body(self, prompt: Prompt, request_id: str) -> dict:
        # Keys that are not inputs become request parameters in Triton's generate endpoint.
        return {"id": request_id, **ensemble_fields(prompt, stream=True),
                **request_parameters(stream=True)}

    def parse_line(self, line: str | bytes) -> Chunk | None:
        if isinstance(line, bytes):
            line = line.decode("utf-8")
        line = line.rstrip("\r\n")
        if not line.startswith("data:"):
            return None
        payload = line[len("data:"):].strip()
        try:
            data = json.loads(payload)
        except json.JSONDecodeError:
            raise ServerReportedError(f"unparseable event: {payload[:120]}") from None
        return parse_json_response(data)


def _infer_input(model: contract.ModelContract, name: str, value: np.ndarray):
    from tritonclient.grpc import InferInput

    tensor = model.input(name)
    array = np.asarray(value, dtype=tensor.numpy_dtype)
    infer_input = InferInput(name, list(array.shape), tensor.client_dtype)
    infer_input.set_data_from_numpy(array)
    return infer_input


def _is_final(result) -> bool:
    params = result.get_response().parameters
    return _FINAL_PARAMETER in params and params[_FINAL_PARAMETER].bool_param


@dataclass(frozen=True)
class GrpcEnsembleProvider:
    """The ensemble over gRPC's bidirectional stream; ``stream`` picks per-token responses."""

    stream: bool = True
    model: str = contract.ENSEMBLE.name

    @property
    def streamed(self) -> bool:
        return self.stream

    @property
    def parameters(self) -> dict:
        return request_parameters(self.stream)

    def inputs(self, prompt: Prompt) -> list:
        """``[1, 1]`` tensors for each field (batch of one request)."""
        fields = ensemble_fields(prompt, stream=self.stream)
        return [_infer_input(contract.ENSEMBLE, name, np.array([[_as_wire(value)]]))
                for name, value in fields.items()]

    def parse(self, result) -> Chunk:
        text = result.as_numpy("text_output")
        return Chunk(
            text=_decode(text.reshape(-1)[0]) if text is not None and text.size else "",
            input_tokens=_int_output(result, "num_input_tokens"),
            output_tokens=_int_output(result, "num_output_tokens"),
            final=_is_final(result),
        )


def _as_wire(value):
    return value.encode("utf-8") if isinstance(value, str) else value


def _decode(value) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _int_output(result, name: str) -> int | None:
    array = result.as_numpy(name)
    return int(array.reshape(-1)[0]) if array is not None and array.size else None


@dataclass(frozen=True)
class GrpcEngineProvider:
    """The engine model (``tensorrt_llm``) with token ids, over the gRPC stream.

    Streaming responses carry only the new tokens (``output_ids`` ``[1, beam, n]``); the
    non-streaming response carries the generated tokens (``exclude_input_in_output``).
    ``end_id`` is the tokenizer's end-of-sequence id (the ensemble's preprocessing supplies it
    for ensemble requests).
    """

    stream: bool = True
    end_id: int | None = None
    model: str = contract.TENSORRT_LLM.name
    parameters = {}  # token ids out: nothing to detokenize

    @property
    def streamed(self) -> bool:
        return self.stream

    def inputs(self, prompt: Prompt) -> list:
        values = {
            "input_ids": np.array([prompt.token_ids]),
            "input_lengths": np.array([[prompt.input_tokens]]),
            "request_output_len": np.array([[prompt.max_tokens]]),
            "streaming": np.array([[self.stream]]),
            "exclude_input_in_output": np.array([[True]]),
            "return_num_input_tokens": np.array([[True]]),
            "return_num_output_tokens": np.array([[True]]),
        }
        if prompt.min_tokens is not None:
            values["min_tokens"] = np.array([[prompt.min_tokens]])
        if self.end_id is not None:
            values["end_id"] = np.array([[self.end_id]])
        return [_infer_input(contract.TENSORRT_LLM, name, v) for name, v in values.items()]

    def parse(self, result) -> Chunk:
        ids = result.as_numpy("output_ids")
        lengths = result.as_numpy("sequence_length")
        tokens: tuple[int, ...] = ()
        if ids is not None and ids.size:
            count = int(lengths.reshape(-1)[0]) if lengths is not None else ids.shape[-1]
            tokens = tuple(int(t) for t in ids.reshape(-1, ids.shape[-1])[0][:count])
        return Chunk(
            token_ids=tokens,
            input_tokens=_int_output(result, "num_input_tokens"),
            output_tokens=_int_output(result, "num_output_tokens"),
            final=_is_final(result),
        )
