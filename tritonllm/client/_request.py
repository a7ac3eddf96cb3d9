"""One request to the ensemble, protocol-neutral: what both transports send."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from tritonllm.contract import INCREMENTAL_DETOKENIZE, TENSORRT_LLM

from ._options import GenerationOptions, input_array


@dataclass(frozen=True)
class InferRequest:
    """``inputs``: ensemble input name -> array with batch dimension 1 (dtypes per
    :mod:`tritonllm.contract`). ``request_id`` is unique per request: the server's streaming
    detokenizer keys its state on it. ``stream`` picks a streamed answer (many responses) or
    exactly one response."""

    model: str
    request_id: str
    inputs: dict[str, np.ndarray]
    stream: bool

    @property
    def parameters(self) -> dict[str, bool]:
        """Request parameters: streams ask the server for exact incremental detokenization."""
        return {INCREMENTAL_DETOKENIZE: True} if self.stream else {}

    @property
    def wants_log_probs(self) -> bool:
        flag = self.inputs.get("return_log_probs")
        return flag is not None and bool(flag.item())

    @property
    def num_top_log_probs(self) -> int:
        value = self.inputs.get("num_top_log_probs")
        return 0 if value is None else int(value.item())


def build_request(model: str, text: str, options: GenerationOptions, *, stream: bool,
                  chat: bool = False, request_id: str | None = None) -> InferRequest:
    """The request for ``text`` (a prompt, or chat messages as JSON when ``chat``)."""
    if not isinstance(text, str):
        raise ValueError(f"prompt: must be a string, got {type(text).__name__}")
    inputs = {"text_input": input_array("text_input", text), **options.inputs(),
              "stream": input_array("stream", stream)}
    if chat:  # our extension; left out otherwise so servers without it accept plain prompts
        inputs["apply_chat_template"] = input_array("apply_chat_template", True)
    return InferRequest(model, request_id or str(uuid.uuid4()), inputs, stream)


# After a caller leaves a request early, the transport reads the rest of its stream for at most
# this long before cancelling it: a stop makes the engine end the request within a step, and
# Triton 2.51 never frees an ensemble request whose stream is cancelled while a step runs
# (measured: ~10-50 KB of tritonserver memory per cancelled request, rejections included).
STOP_DRAIN_S = 5.0


def stop_request(request_id: str) -> InferRequest:
    """TensorRT-LLM's way to stop a running request: ``stop`` sent to the engine step with the
    request's id. The CPU engine honours it too; it frees the request's KV cache at once.

    Needed for ensembles: Triton 2.51 does not pass an ensemble's cancellation (a closed stream)
    to its running engine step, which would otherwise generate up to ``max_tokens``.
    """
    one = lambda value, dtype: np.array([[value]], dtype=dtype)  # noqa: E731
    inputs = {"input_ids": one(0, np.int32), "input_lengths": one(1, np.int32),
              "request_output_len": one(1, np.int32), "stop": one(True, np.bool_)}
    return InferRequest(TENSORRT_LLM.name, request_id, inputs, stream=False)


def messages_to_text(messages: Sequence[Mapping], tools: Sequence[Mapping] | None = None) -> str:
    """Chat messages as ``text_input`` carries them with ``apply_chat_template``: the JSON array
    ``[{"role": ..., "content": ...}, ...]``, or ``{"messages": [...], "tools": [...]}`` with
    tools. An assistant message may carry ``tool_calls`` (its content then may be None), a
    ``tool`` message its ``tool_call_id``. ValueError naming the bad message otherwise."""
    if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence) or not messages:
        raise ValueError("messages: must be a non-empty list of {'role', 'content'} mappings")
    checked = [_message(i, m) for i, m in enumerate(messages)]
    if tools:
        return json.dumps({"messages": checked, "tools": [dict(t) for t in tools]},
                          ensure_ascii=False)
    return json.dumps(checked, ensure_ascii=False)


def _message(index: int, message: Mapping) -> dict:
    if not isinstance(message, Mapping):
        raise ValueError(f"messages[{index}]: must be a mapping with 'role' and 'content'")
    calls = message.get("tool_calls")
    if not isinstance(message.get("role"), str):
        raise ValueError(f"messages[{index}].role: must be a string, got {message.get('role')!r}")
    if not isinstance(message.get("content"), str) and not (calls and message.get("content")
                                                            is None):
        raise ValueError(f"messages[{index}].content: must be a string, "
                         f"got {message.get('content')!r}")
    checked = {"role": message["role"], "content": message.get("content")}
    if calls:
        checked["tool_calls"] = [dict(c) for c in calls]
    if message.get("tool_call_id") is not None:
        checked["tool_call_id"] = str(message["tool_call_id"])
    return checked
