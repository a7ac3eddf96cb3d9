"""OpenAI request bodies -> one :class:`GenerationCall`, validated field by field.

Every field of a body is either used, accepted because it cannot change the answer (``user``,
``metadata``), accepted only at its no-op value (``n: 1``, ``tools: []``, ...), or refused with
a 400 naming it. A field this module does not know is refused too: an unknown field is never
silently ignored. Ranges are OpenAI's (``temperature`` in [0, 2], penalties in [-2, 2]);
limits that depend on the deployment (prompt length, ``max_tokens`` against ``max_seq_len``)
are checked once, by the ensemble's preprocessing, and its refusal is passed on.

Sampling follows OpenAI's meaning: ``temperature`` (default 1) and ``top_p`` (default 1)
sample; ``temperature: 0`` is greedy. (The engine alone would decode greedily when nothing is
given, so the frontend always says which.)
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from tritonllm.client import GenerationOptions

from .errors import invalid, unsupported
from .tools import ToolChoice, tool_choice

CHAT = "chat.completions"
COMPLETIONS = "completions"

# Fields accepted at their no-op value only: name -> predicate on the value.
_NOOP_CHAT: dict[str, Callable[[object], bool]] = {
    "n": lambda v: v in (None, 1),
    "functions": lambda v: v in (None, []),
    "function_call": lambda v: v in (None, "none"),
    "parallel_tool_calls": lambda v: v is None or isinstance(v, bool),  # one call per reply
    "logit_bias": lambda v: v in (None, {}),
    "modalities": lambda v: v in (None, ["text"]),
    "audio": lambda v: v is None,
    "prediction": lambda v: v is None,
    "reasoning_effort": lambda v: v is None,
    "web_search_options": lambda v: v is None,
    "service_tier": lambda v: v in (None, "auto", "default"),
    "store": lambda v: v in (None, False),
}
_NOOP_COMPLETIONS: dict[str, Callable[[object], bool]] = {
    "n": lambda v: v in (None, 1),
    "best_of": lambda v: v in (None, 1),
    "suffix": lambda v: v in (None, ""),
    "logit_bias": lambda v: v in (None, {}),
}
# Fields that cannot change the answer: accepted whatever their (well-typed) value.
_INERT = ("user", "metadata")
_SAMPLING = ("temperature", "top_p", "seed", "stop", "presence_penalty", "frequency_penalty",
             "max_tokens", "stream", "stream_options", "logprobs", "model",
             # extensions that vLLM also accepts; the engine implements them
             "top_k", "min_tokens", "repetition_penalty")
_USED = {CHAT: frozenset((*_SAMPLING, "messages", "max_completion_tokens", "top_logprobs",
                          "response_format", "tools", "tool_choice")),
         COMPLETIONS: frozenset((*_SAMPLING, "prompt", "echo", "response_format"))}
# OpenAI's limits on the alternatives per token: chat ``top_logprobs``, completions ``logprobs``.
MAX_TOP_LOGPROBS = {CHAT: 20, COMPLETIONS: 5}
_NOOP = {CHAT: _NOOP_CHAT, COMPLETIONS: _NOOP_COMPLETIONS}
_ROLES = ("system", "developer", "user", "assistant", "tool")


@dataclass(frozen=True)
class GenerationCall:
    """One validated request. ``prompt``: the completion prompt; ``messages``: the chat
    messages (``{"role", "content"}`` with text content), which the ensemble's preprocessing
    renders with the model's chat template, once (``apply_chat_template``). ``renames``:
    ensemble input -> the request field that set it, for naming fields in the server's
    refusals. ``logprobs``: None when the client did not ask for token log probabilities,
    else how many alternatives per token (chat ``top_logprobs``, completions ``logprobs``)."""

    endpoint: str
    model: str
    options: GenerationOptions
    prompt: str = ""
    messages: tuple[dict, ...] = ()
    stream: bool = False
    include_usage: bool = False
    echo: bool = False
    logprobs: int | None = None
    tools: ToolChoice = field(default_factory=ToolChoice)
    renames: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.endpoint not in _USED:
            raise ValueError(f"endpoint: must be {CHAT!r} or {COMPLETIONS!r}, got "
                             f"{self.endpoint!r}")
        if self.include_usage and not self.stream:
            raise ValueError("include_usage: only for streamed requests")
        if bool(self.messages) != self.chat or bool(self.prompt) == self.chat:
            raise ValueError("messages: required for chat, prompt for completions (not both)")

    @property
    def chat(self) -> bool:
        return self.endpoint == CHAT

    @property
    def max_tokens(self) -> int:
        return self.options.max_tokens


def parse_body(raw: bytes) -> dict:
    """The JSON object of a request body; 400 otherwise."""
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise invalid(None, f"the request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise invalid(None, "the request body must be a JSON object")
    return body


def parse_chat(body: Mapping, *, default_max_tokens: int) -> GenerationCall:
    """A ``POST /v1/chat/completions`` body."""
    _check_fields(body, CHAT)
    logprobs = _chat_logprobs(body)
    tools = tool_choice(body)
    if tools.active and response_format_guide(body.get("response_format")) is not None:
        raise invalid("response_format", "response_format: not with tools (tool_choice "
                                         f"{tools.mode!r}); send one or the other")
    max_tokens, source = _max_tokens(body, ("max_completion_tokens", "max_tokens"),
                                     default_max_tokens)
    options = _options(body, max_tokens, logprobs)
    if tools.guided:
        options = dataclasses.replace(options, guide_type="json_schema", guide=tools.guide())
    return GenerationCall(
        endpoint=CHAT, model=_model(body), messages=chat_messages(body.get("messages")),
        options=options, stream=_stream(body),
        include_usage=_include_usage(body), logprobs=logprobs, tools=tools,
        renames={"text_input": "messages", "max_tokens": source, "stop_words": "stop",
                 **_guide_renames("tools" if tools.guided else "response_format"),
                 "num_top_log_probs": "top_logprobs"})


def parse_completion(body: Mapping, *, default_max_tokens: int) -> GenerationCall:
    """A ``POST /v1/completions`` body."""
    _check_fields(body, COMPLETIONS)
    logprobs = _get(body, "logprobs", int, 0, MAX_TOP_LOGPROBS[COMPLETIONS])
    max_tokens, source = _max_tokens(body, ("max_tokens",), default_max_tokens)
    return GenerationCall(
        endpoint=COMPLETIONS, model=_model(body), prompt=prompt_text(body.get("prompt")),
        options=_options(body, max_tokens, logprobs), stream=_stream(body),
        include_usage=_include_usage(body), echo=bool(_get(body, "echo", bool)),
        logprobs=logprobs,
        renames={"text_input": "prompt", "max_tokens": source, "stop_words": "stop",
                 **_guide_renames("response_format"), "num_top_log_probs": "logprobs"})


# --- fields ----------------------------------------------------------------------------------

def _check_fields(body: Mapping, endpoint: str) -> None:
    for name, value in body.items():
        if name in _USED[endpoint] or name in _INERT:
            continue
        noop = _NOOP[endpoint].get(name)
        if noop is None:
            raise invalid(name, f"{name}: unknown field for /v1/{endpoint}", "unknown_parameter")
        if not noop(value):
            raise unsupported(name, f"got {value!r}")
    for name in _INERT:
        if name == "user":
            _get(body, "user", str)
        elif body.get(name) is not None and not isinstance(body[name], dict):
            raise invalid(name, f"{name}: must be an object")


def _chat_logprobs(body: Mapping) -> int | None:
    """None unless ``logprobs`` is true; then ``top_logprobs`` (default 0)."""
    top = _get(body, "top_logprobs", int, 0, MAX_TOP_LOGPROBS[CHAT])
    if not _get(body, "logprobs", bool):
        if top:
            raise invalid("top_logprobs", "top_logprobs: needs logprobs set to true")
        return None
    return top or 0


def _guide_renames(field: str) -> dict[str, str]:
    """The guided-decoding inputs, named after the request field that set them
    (``response_format``, or ``tools`` for a constrained tool call)."""
    return {"guided_decoding_guide": field, "guided_decoding_guide_type": field}


def response_format_guide(value) -> tuple[str, str] | None:
    """``response_format`` -> the engine's ``(guide type, guide)``, or None for plain text:
    ``json_object`` is any JSON value (TensorRT-LLM's ``json`` guide);
    ``json_schema`` is JSON matching ``json_schema.schema`` (any JSON when it has none)."""
    if value is None:
        return None
    if not isinstance(value, dict) or "type" not in value:
        raise invalid("response_format", "response_format: must be an object with a type")
    kind = value["type"]
    if kind == "text":
        return None
    if kind == "json_object":
        return "json", ""
    if kind != "json_schema":
        raise invalid("response_format", "response_format.type: must be one of 'text', "
                                         f"'json_object', 'json_schema', got {kind!r}")
    spec = value.get("json_schema")
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
        raise invalid("response_format", "response_format.json_schema: must be an object with "
                                         "a name (and a schema)")
    schema = spec.get("schema")
    if schema is None:
        return "json", ""
    if not isinstance(schema, dict):
        raise invalid("response_format", "response_format.json_schema.schema: must be a JSON "
                                         "Schema object")
    return "json_schema", json.dumps(schema)


def _model(body: Mapping) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise invalid("model", "model: required, a model id from GET /v1/models")
    return model


def _stream(body: Mapping) -> bool:
    return bool(_get(body, "stream", bool))


def _include_usage(body: Mapping) -> bool:
    options = body.get("stream_options")
    if options is None:
        return False
    if not _stream(body):
        raise invalid("stream_options", "stream_options: only allowed when stream is true")
    if not isinstance(options, dict):
        raise invalid("stream_options", "stream_options: must be an object")
    unknown = sorted(set(options) - {"include_usage"})
    if unknown:
        raise unsupported(f"stream_options.{unknown[0]}")
    return bool(_get(options, "include_usage", bool, param="stream_options.include_usage"))


def _max_tokens(body: Mapping, names: tuple[str, ...], default: int) -> tuple[int, str]:
    """The first of ``names`` present wins; ``(value, the field it came from)``."""
    for name in names:
        value = _get(body, name, int, 1, 2**31 - 1)
        if value is not None:
            return value, name
    return default, names[-1]


def _options(body: Mapping, max_tokens: int, logprobs: int | None = None) -> GenerationOptions:
    temperature = _get(body, "temperature", float, 0.0, 2.0)
    top_p = _get(body, "top_p", float, 0.0, 1.0)
    if top_p == 0:
        raise invalid("top_p", "top_p: must be in (0, 1], got 0")
    greedy = temperature == 0
    return GenerationOptions(
        max_tokens=max_tokens,
        temperature=0.0 if greedy else (1.0 if temperature is None else temperature),
        top_p=None if greedy else (1.0 if top_p is None else top_p),
        seed=_seed(body, greedy),
        stop=stop_words(body.get("stop")),
        presence_penalty=_get(body, "presence_penalty", float, -2.0, 2.0),
        frequency_penalty=_get(body, "frequency_penalty", float, -2.0, 2.0),
        top_k=_get(body, "top_k", int, 0, 2**31 - 1),
        min_tokens=_get(body, "min_tokens", int, 0, 2**31 - 1),
        repetition_penalty=_get(body, "repetition_penalty", float, 0.0, math.inf),
        return_num_tokens=True,
        return_log_probs=logprobs is not None,
        num_top_log_probs=logprobs or None,
        **_guide_options(response_format_guide(body.get("response_format"))),
    )


def _guide_options(guide: tuple[str, str] | None) -> dict:
    if guide is None:
        return {}
    return {"guide_type": guide[0], "guide": guide[1] or None}


def _seed(body: Mapping, greedy: bool) -> int | None:
    """The client's seed; else a fresh one for a sampled request. TensorRT-LLM's backend (and
    the CPU engine step, which follows it) treats an absent seed as 0, so identical requests
    would sample identical text; OpenAI clients expect fresh samples."""
    seed = _get(body, "seed", int, 0, 2**64 - 1)
    if seed is None and not greedy:
        seed = secrets.randbits(63)
    return seed


def stop_words(value) -> tuple[str, ...]:
    """``stop``: a string or a list of non-empty strings."""
    words = [value] if isinstance(value, str) else value
    if words is None:
        return ()
    if not isinstance(words, list) or not all(isinstance(w, str) and w for w in words):
        raise invalid("stop", "stop: must be a non-empty string or a list of them")
    return tuple(words)


_TYPES = {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}


def _get(body: Mapping, name: str, kind: type, low=None, high=None, *, param: str | None = None):
    """``body[name]`` checked to be ``kind`` within [low, high]; None when absent or null."""
    value, param = body.get(name), param or name
    if value is None:
        return None
    if not _is(value, kind):
        raise invalid(param, f"{param}: must be {_TYPES[kind]}, got {value!r}")
    if (low is not None and value < low) or (high is not None and value > high):
        raise invalid(param, f"{param}: must be in [{low}, {high}], got {value!r}")
    return float(value) if kind is float else value


def _is(value, kind: type) -> bool:
    if kind is bool or isinstance(value, bool):
        return kind is bool and isinstance(value, bool)
    if kind is float:
        return isinstance(value, numbers.Real) and math.isfinite(value)
    return isinstance(value, kind)


# --- prompts and messages --------------------------------------------------------------------

def prompt_text(prompt) -> str:
    """``prompt``: a string, or a list holding one string. Several prompts (a list of more
    than one) and token-id prompts are refused: one request, one choice."""
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if isinstance(prompt, str):
        if not prompt:
            raise invalid("prompt", "prompt: must not be empty")
        return prompt
    if isinstance(prompt, list) and prompt and all(isinstance(p, str) for p in prompt):
        raise unsupported("prompt", f"a list of {len(prompt)} prompts; send one prompt per "
                                    "request")
    if isinstance(prompt, list) and prompt and not all(isinstance(p, str) for p in prompt):
        raise unsupported("prompt", "token-id prompts; send the prompt as text")
    raise invalid("prompt", "prompt: required, a non-empty string")


def chat_messages(messages) -> tuple[dict[str, str], ...]:
    """``messages`` as ``{"role", "content"}`` dicts with string content."""
    if not isinstance(messages, list) or not messages:
        raise invalid("messages", "messages: required, a non-empty list of messages")
    return tuple(_message(i, m) for i, m in enumerate(messages))


# Keys a message may carry besides role and content, by role.
_MESSAGE_EXTRAS = {"assistant": ("tool_calls",), "tool": ("tool_call_id",)}


def _message(index: int, message) -> dict:
    where = f"messages[{index}]"
    if not isinstance(message, dict):
        raise invalid("messages", f"{where}: must be an object with role and content")
    role = message.get("role")
    if role not in _ROLES:
        raise invalid("messages", f"{where}.role: must be one of {list(_ROLES)}, got "
                                  f"{role!r}")
    for key in message:
        if key not in ("role", "content", *_MESSAGE_EXTRAS.get(role, ())):
            raise unsupported(f"{where}.{key}")
    if role == "assistant" and message.get("tool_calls"):
        content = message.get("content")
        return {"role": role, "content": None if content is None else _content(where, content),
                "tool_calls": _tool_calls(where, message["tool_calls"])}
    checked = {"role": role, "content": _content(where, message.get("content"))}
    if role == "tool":
        if not isinstance(message.get("tool_call_id"), str):
            raise invalid("messages", f"{where}.tool_call_id: required, a string")
        checked["tool_call_id"] = message["tool_call_id"]
    return checked


def _tool_calls(where: str, calls) -> list[dict]:
    """An assistant message's earlier calls: ``{"id", "type": "function", "function": {"name",
    "arguments" (JSON text)}}``."""
    if not isinstance(calls, list):
        raise invalid("messages", f"{where}.tool_calls: must be a list")
    checked = []
    for j, call in enumerate(calls):
        function = call.get("function") if isinstance(call, dict) else None
        if (not isinstance(function, dict) or not isinstance(function.get("name"), str)
                or not isinstance(function.get("arguments"), str)):
            raise invalid("messages", f"{where}.tool_calls[{j}]: must hold function.name and "
                                      "function.arguments (JSON text)")
        checked.append({"id": str(call.get("id", "")), "type": "function",
                        "function": {"name": function["name"],
                                     "arguments": function["arguments"]}})
    return checked


def _content(where: str, content) -> str:
    """A string, or a list of text parts (joined with newlines, as vLLM does)."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise invalid("messages", f"{where}.content: must be a string or a list of text parts")
    texts = []
    for j, part in enumerate(content):
        if not isinstance(part, dict) or part.get("type") != "text":
            kind = part.get("type") if isinstance(part, dict) else type(part).__name__
            raise unsupported(f"{where}.content[{j}].type", f"only text parts, got {kind!r}")
        if not isinstance(part.get("text"), str):
            raise invalid("messages", f"{where}.content[{j}].text: must be a string")
        texts.append(part["text"])
    return "\n".join(texts)
