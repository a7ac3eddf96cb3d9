"""Tool (function) calls: how a model is told about tools, and how its calls are written and read.

A call is one JSON object, ``{"name": <function name>, "arguments": {...}}``. Llama 3.1+ writes
``{"name": ..., "parameters": {...}}`` (optionally after ``<|python_tag|>``); both spellings are
read. The OpenAI frontend constrains ``tool_choice: "required"`` and a named function to this
object with guided decoding (:func:`call_schema`), and reads ``"auto"`` replies with
:func:`parse_call`.

Chat templates that know tools (their text uses ``tools``; Llama 3.1+, Qwen 2.5, ...) get the
tools, the assistant's ``tool_calls`` and the ``tool`` messages as they are. For a template that
does not (SmolLM2's, Llama 2's), :func:`messages_for_plain_template` says the same in text: the
tools and the call format in a system message, each earlier call as the assistant's JSON text.
"""

from __future__ import annotations

import json

PYTHON_TAG = "<|python_tag|>"  # Llama 3.1's prefix before a tool call


def template_knows_tools(chat_template: str | None) -> bool:
    return bool(chat_template) and "tools" in chat_template


def call_schema(functions: list[dict]) -> dict:
    """JSON Schema of one call to any of ``functions`` (OpenAI ``function`` objects)."""
    options = [{"type": "object",
                "properties": {"name": {"const": f["name"]},
                               "arguments": f.get("parameters") or {"type": "object"}},
                "required": ["name", "arguments"], "additionalProperties": False}
               for f in functions]
    return options[0] if len(options) == 1 else {"anyOf": options}


def parse_call(text: str, names: set[str]) -> tuple[str, str] | None:
    """``(function name, arguments as JSON text)`` when ``text`` is exactly one call to one of
    ``names``; None when it is anything else (a plain answer)."""
    body = text.strip()
    if body.startswith(PYTHON_TAG):
        body = body[len(PYTHON_TAG):].strip()
    try:
        call = json.loads(body)
    except json.JSONDecodeError:
        return None
    if not isinstance(call, dict) or call.get("name") not in names:
        return None
    arguments = call.get("arguments", call.get("parameters"))
    if not isinstance(arguments, dict) or not set(call) <= {"name", "arguments", "parameters"}:
        return None
    return call["name"], json.dumps(arguments, ensure_ascii=False)


def messages_for_plain_template(messages: list[dict], tools: list[dict]) -> list[dict]:
    """``messages`` as plain ``{"role", "content"}`` text for a template without tools."""
    plain = []
    for message in messages:
        content = message.get("content") or ""
        calls = message.get("tool_calls") or []
        if calls:
            written = [json.dumps({"name": c["function"]["name"],
                                   "arguments": _arguments(c["function"].get("arguments"))},
                                  ensure_ascii=False) for c in calls]
            content = "\n".join(([content] if content else []) + written)
        plain.append({"role": message["role"], "content": content})
    if not tools:
        return plain
    intro = _tools_prompt(tools)
    if plain and plain[0]["role"] in ("system", "developer"):
        return [{"role": plain[0]["role"], "content": plain[0]["content"] + "\n\n" + intro},
                *plain[1:]]
    return [{"role": "system", "content": intro}, *plain]


def _tools_prompt(tools: list[dict]) -> str:
    functions = "\n".join(json.dumps(t["function"], ensure_ascii=False) for t in tools)
    return ("You can call these functions:\n" + functions + "\n\nTo call one, reply with only "
            'a JSON object: {"name": <function name>, "arguments": <arguments object>}. '
            "A function's result comes back in a message from the tool.")


def _arguments(arguments) -> dict | str:
    if isinstance(arguments, str):
        try:
            return json.loads(arguments)
        except json.JSONDecodeError:
            return arguments
    return arguments if arguments is not None else {}
