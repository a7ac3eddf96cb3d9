"""Response bodies in OpenAI's wire shape, as the ``openai`` SDK parses them.

Non-streamed: ``chat.completion`` / ``text_completion`` objects. Streamed: the same objects as
chunks (``chat.completion.chunk`` / ``text_completion``), sent as server-sent events
``data: {json}\\n\\n`` and closed by ``data: [DONE]\\n\\n``. One choice (index 0) per request.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field

from .generation import Finish
from .protocol import CHAT

DONE = "data: [DONE]\n\n"


def sse(payload: dict) -> str:
    """One server-sent event carrying ``payload``."""
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"


@dataclass(frozen=True)
class ResponseHead:
    """What every body and chunk of one response shares: ``id`` (``chatcmpl-…`` for chat,
    ``cmpl-…`` for completions), ``created`` (Unix seconds) and the model id."""

    endpoint: str
    model: str
    id: str = ""
    created: int = field(default_factory=lambda: int(time.time()))

    def __post_init__(self) -> None:
        if not self.id:
            prefix = "chatcmpl" if self.chat else "cmpl"
            object.__setattr__(self, "id", f"{prefix}-{uuid.uuid4().hex}")

    @property
    def chat(self) -> bool:
        return self.endpoint == CHAT

    def _base(self, obj: str) -> dict:
        return {"id": self.id, "object": obj, "created": self.created, "model": self.model,
                "system_fingerprint": None}

    def body(self, text: str, finish: Finish, logprobs: dict | None = None,
             tool_calls: list[dict] | None = None) -> dict:
        """The whole non-streamed response; ``logprobs`` in the endpoint's shape
        (:mod:`.logprobs`) when asked for; chat ``tool_calls`` replace the content."""
        if self.chat:
            message = {"role": "assistant", "content": None if tool_calls else text}
            if tool_calls:
                message["tool_calls"] = tool_calls
            choice = {"index": 0, "message": message,
                      "logprobs": logprobs, "finish_reason": finish.reason}
            return {**self._base("chat.completion"), "choices": [choice], "usage": finish.usage}
        choice = {"index": 0, "text": text, "logprobs": logprobs, "finish_reason": finish.reason}
        return {**self._base("text_completion"), "choices": [choice], "usage": finish.usage}

    def chunk(self, text: str | None = None, *, first: bool = False,
              finish_reason: str | None = None, with_usage_field: bool = False,
              logprobs: dict | None = None, tool_calls: list[dict] | None = None) -> dict:
        """One streamed chunk with one choice: a text delta, the first chunk (chat: the
        assistant role), or the last one (``finish_reason``). ``with_usage_field`` adds
        ``usage: null``, as OpenAI does on every chunk when usage was asked for."""
        if self.chat:
            delta = {"role": "assistant", "content": ""} if first else {}
            if text is not None:
                delta["content"] = text
            if tool_calls:  # each call whole, in one delta
                delta["tool_calls"] = [{"index": i, **c} for i, c in enumerate(tool_calls)]
            choice = {"index": 0, "delta": delta, "logprobs": logprobs,
                      "finish_reason": finish_reason}
            chunk = {**self._base("chat.completion.chunk"), "choices": [choice]}
        else:
            choice = {"index": 0, "text": text or "", "logprobs": logprobs,
                      "finish_reason": finish_reason}
            chunk = {**self._base("text_completion"), "choices": [choice]}
        return {**chunk, "usage": None} if with_usage_field else chunk

    def usage_chunk(self, finish: Finish) -> dict:
        """The extra last chunk of ``stream_options.include_usage``: no choices, the usage."""
        obj = "chat.completion.chunk" if self.chat else "text_completion"
        return {**self._base(obj), "choices": [], "usage": finish.usage}


def model_card(model_id: str, created: int) -> dict:
    return {"id": model_id, "object": "model", "created": created, "owned_by": "tritonllm"}


def model_list(model_id: str, created: int) -> dict:
    return {"object": "list", "data": [model_card(model_id, created)]}
