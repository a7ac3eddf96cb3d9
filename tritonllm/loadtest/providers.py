"""Providers: build one request's payload and parse its responses. No Locust, no I/O.

The wire code is the client's (:mod:`tritonllm.client`), one implementation for both: requests
are built by ``client._request.build_request`` (tensor names from ``tritonllm.contract``, the
request id, the streaming detokenizer's parameter), HTTP bodies by ``client._http.json_body``,
responses parsed by ``client._http.outputs_from_json`` and server-sent events decoded by
``client._sse.SSEDecoder``. Every request asks the server for its token counts
(``return_num_input_tokens`` / ``return_num_output_tokens``), which are what the metrics report.

- :class:`HttpGenerateProvider`: ``POST /v2/models/{model}/generate``, one JSON response.
- :class:`HttpStreamProvider`: ``POST /v2/models/{model}/generate_stream``, Server-Sent Events,
  one ``data: {json}`` line per response.
- :class:`OpenAIStreamProvider`: ``POST /v1/completions`` (or ``/v1/chat/completions`` for chat
  prompts) with ``stream: true``: OpenAI's SSE chunks, ending with ``data: [DONE]``; the
  token counts come with the last chunk (``stream_options.include_usage``).
- :class:`GrpcEnsembleProvider`: the ``ensemble`` over gRPC's bidirectional stream (decoupled
  models answer only there, even with ``stream=false``).
- :class:`GrpcEngineProvider`: the engine model ``tensorrt_llm`` directly, with token ids, to
  separate pre/post-processing cost from the engine's.

Errors the server reports inside a response raise the client's ``ServerError``
(:class:`ServerReportedError` here).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import requests

from tritonllm import contract
from tritonllm.client import GenerationOptions, ServerError
from tritonllm.client._http import generate_path, json_body, outputs_from_json
from tritonllm.client._request import InferRequest, build_request
from tritonllm.client._sse import SSEDecoder
from tritonllm.loadtest.trace import Chunk
from tritonllm.loadtest.workloads import Prompt

_FINAL_PARAMETER = "triton_final_response"

ServerReportedError = ServerError  # the server answered with an error instead of outputs


def ensemble_request(prompt: Prompt, model: str, stream: bool, request_id: str) -> InferRequest:
    """The client's request for ``prompt``: greedy, the completion only, token counts asked."""
    guide_type, guide = prompt.guide or (None, None)
    options = GenerationOptions(max_tokens=prompt.max_tokens, min_tokens=prompt.min_tokens,
                                guide_type=guide_type, guide=guide)
    return build_request(model, prompt.text, options, stream=stream, chat=prompt.chat,
                         request_id=request_id)


def _first(outputs: dict, name: str):
    values = outputs.get(name)
    return values[0] if values else None


def chunk_from_outputs(outputs: dict, final: bool = False) -> Chunk:
    """The client's ``Outputs`` (output name -> values) as a load-test :class:`Chunk`."""
    input_tokens, output_tokens = (_first(outputs, n) for n in ("num_input_tokens",
                                                                "num_output_tokens"))
    return Chunk(text="".join(outputs.get("text_output", ())),
                 input_tokens=None if input_tokens is None else int(input_tokens),
                 output_tokens=None if output_tokens is None else int(output_tokens),
                 final=final)


@dataclass(frozen=True)
class HttpGenerateProvider:
    """Non-streaming HTTP ``generate``: one request, one JSON response."""

    model: str = contract.ENSEMBLE.name
    streamed = False

    @property
    def path(self) -> str:
        return generate_path(self.model, stream=False)

    def body(self, prompt: Prompt, request_id: str) -> dict:
        return json_body(ensemble_request(prompt, self.model, False, request_id))

    def parse(self, data: dict, status: int = 200) -> Chunk:
        return chunk_from_outputs(outputs_from_json(data, status), final=True)


@dataclass(frozen=True)
class HttpStreamProvider:
    """Streaming HTTP ``generate_stream`` (SSE). :meth:`parse_line` takes the event stream one
    text line at a time and returns a :class:`Chunk` when a line ends an event, else ``None``
    (data lines, comments). One provider per request: it holds that stream's decoder."""

    model: str = contract.ENSEMBLE.name
    streamed = True
    _sse: SSEDecoder = field(default_factory=SSEDecoder, compare=False, repr=False)

    @property
    def path(self) -> str:
        return generate_path(self.model, stream=True)

    def body(self, prompt: Prompt, request_id: str) -> dict:
        return json_body(ensemble_request(prompt, self.model, True, request_id))

    def parse_line(self, line: str | bytes) -> Chunk | None:
        data = self._sse.feed(line)
        return None if data is None else self.parse_event(data)

    def finish(self) -> Chunk | None:
        """The event left pending when the stream ended without a blank line."""
        data = self._sse.flush()
        return None if data is None else self.parse_event(data)

    @staticmethod
    def parse_event(data: str, status: int = 200) -> Chunk:
        try:
            obj = json.loads(data)
        except json.JSONDecodeError:
            raise ServerReportedError(f"unparseable event: {data[:120]}") from None
        return chunk_from_outputs(outputs_from_json(obj, status))


@dataclass(frozen=True)
class OpenAIStreamProvider:
    """The OpenAI API, streamed: ``/v1/completions`` for plain prompts, ``/v1/chat/completions``
    for chat prompts (``Prompt.text`` then holds the messages as JSON). Each chunk with text is a
    :class:`Chunk`; the usage chunk carries the token counts; ``[DONE]`` is the final chunk.
    One provider per request (it holds the stream's SSE decoder)."""

    model: str = contract.ENSEMBLE.name
    chat: bool = False
    streamed = True
    _sse: SSEDecoder = field(default_factory=SSEDecoder, compare=False, repr=False)

    @property
    def path(self) -> str:
        return "/v1/chat/completions" if self.chat else "/v1/completions"

    def body(self, prompt: Prompt, request_id: str) -> dict:
        """``request_id`` goes in ``user`` (the API has no request id field)."""
        body = {"model": self.model, "max_tokens": prompt.max_tokens, "temperature": 0,
                "stream": True, "stream_options": {"include_usage": True}, "user": request_id}
        if prompt.min_tokens is not None:
            body["min_tokens"] = prompt.min_tokens  # vLLM's extension, accepted by ours
        if prompt.guide is not None:
            body["response_format"] = response_format(prompt.guide)
        if self.chat:
            body["messages"] = json.loads(prompt.text)
        else:
            body["prompt"] = prompt.text
        return body

    def parse_line(self, line: str | bytes) -> Chunk | None:
        data = self._sse.feed(line)
        return None if data is None else self.parse_event(data)

    @staticmethod
    def parse_event(data: str) -> Chunk:
        if data.strip() == "[DONE]":
            return Chunk(final=True)
        try:
            obj = json.loads(data)
        except json.JSONDecodeError:
            raise ServerReportedError(f"unparseable event: {data[:120]}") from None
        if "error" in obj:
            raise ServerReportedError(str(obj["error"].get("message", obj["error"])))
        usage = obj.get("usage") or {}
        return Chunk(text="".join(_choice_text(c) for c in obj.get("choices", ())),
                     input_tokens=usage.get("prompt_tokens"),
                     output_tokens=usage.get("completion_tokens"))


def _choice_text(choice: dict) -> str:
    if "text" in choice:
        return choice["text"] or ""
    return (choice.get("delta") or {}).get("content") or ""


def _infer_input(model: contract.ModelContract, name: str, value: np.ndarray):
    from tritonclient.grpc import InferInput

    tensor = model.input(name)
    array = np.asarray(value, dtype=tensor.numpy_dtype)
    infer_input = InferInput(name, list(array.shape), tensor.client_dtype)
    infer_input.set_data_from_numpy(array)
    return infer_input


def response_format(guide: tuple[str, str]) -> dict:
    """A workload's guide as the OpenAI API's ``response_format``."""
    kind, text = guide
    if kind == "json":
        return {"type": "json_object"}
    if kind == "json_schema":
        return {"type": "json_schema",
                "json_schema": {"name": "workload", "schema": json.loads(text)}}
    raise ValueError(f"guided_decoding_guide_type: the OpenAI API has no response_format for "
                     f"a {kind!r} guide")


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
        return InferRequest(self.model, "", {}, self.stream).parameters

    def inputs(self, prompt: Prompt) -> list:
        """The client's request tensors (``[1, 1]`` each: a batch of one request)."""
        request = ensemble_request(prompt, self.model, self.stream, request_id="")
        return [_infer_input(contract.ENSEMBLE, name, value)
                for name, value in request.inputs.items()]

    def parse(self, result) -> Chunk:
        text = result.as_numpy("text_output")
        return Chunk(
            text=_decode(text.reshape(-1)[0]) if text is not None and text.size else "",
            input_tokens=_int_output(result, "num_input_tokens"),
            output_tokens=_int_output(result, "num_output_tokens"),
            final=_is_final(result),
        )


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
        if prompt.guide is not None:
            for name, text in zip(("guided_decoding_guide_type", "guided_decoding_guide"),
                                  prompt.guide):
                values[name] = np.array([[text.encode("utf-8")]], dtype=np.object_)
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


def served_model_ids(base_url: str, timeout_s: float = 10.0) -> list[str]:
    """The model ids an OpenAI-API server lists at ``GET /v1/models``, in its order."""
    reply = requests.get(f"{base_url.rstrip('/')}/v1/models", timeout=timeout_s)
    reply.raise_for_status()
    return [model["id"] for model in reply.json().get("data", [])]
