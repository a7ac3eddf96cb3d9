"""``tools`` and ``tool_choice`` of a chat request, and the tool calls of its reply.

- ``"none"`` (the default without tools): the tools are not shown to the model; a plain reply.
- ``"required"`` / a named function: the reply is constrained by guided decoding to one call
  ``{"name", "arguments"}`` whose arguments match the function's ``parameters`` schema
  (:func:`tritonllm.tool_calls.call_schema`); it comes back as ``message.tool_calls``.
- ``"auto"`` (the default with tools): the model sees the tools and answers freely; a reply that
  is exactly one call (:func:`tritonllm.tool_calls.parse_call`) becomes ``tool_calls``, anything
  else is the message's content.

One call per reply (``parallel_tool_calls`` is accepted; it changes nothing here).
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass

from tritonllm.tool_calls import PYTHON_TAG, call_schema, parse_call

from .errors import invalid

_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # OpenAI's rule for function names


@dataclass(frozen=True)
class ToolChoice:
    """What a request allows: ``mode`` is ``none``, ``auto``, ``required`` or ``function``
    (then ``name`` is the function); ``tools`` are the request's tools."""

    mode: str = "none"
    name: str | None = None
    tools: tuple[dict, ...] = ()

    @property
    def active(self) -> bool:
        return self.mode != "none"

    @property
    def guided(self) -> bool:
        """The reply is constrained to a call."""
        return self.mode in ("required", "function")

    @property
    def names(self) -> set[str]:
        return {t["function"]["name"] for t in self.tools}

    def guide(self) -> str:
        """The ``json_schema`` guide of a constrained reply."""
        functions = [t["function"] for t in self.tools
                     if self.mode == "required" or t["function"]["name"] == self.name]
        return json.dumps(call_schema(functions))

    def finish_reason(self) -> str:
        """OpenAI's: ``tool_calls``, but ``stop`` when the client named the function."""
        return "stop" if self.mode == "function" else "tool_calls"

    def could_be_call(self, text: str) -> bool:
        """While streaming ``auto``: whether ``text`` (the reply so far) may still become a
        call, so it must be held back rather than sent as content."""
        head = text.lstrip()
        return (not head or head.startswith("{") or PYTHON_TAG.startswith(head)
                or head.startswith(PYTHON_TAG))

    def calls(self, text: str) -> list[dict] | None:
        """The reply's ``tool_calls`` (OpenAI's shape, fresh ids), or None for a plain reply."""
        if not self.active:
            return None
        parsed = parse_call(text, self.names)
        if parsed is None:
            return None
        name, arguments = parsed
        return [{"id": f"call_{uuid.uuid4().hex[:24]}", "type": "function",
                 "function": {"name": name, "arguments": arguments}}]


def tool_choice(body: Mapping) -> ToolChoice:
    """``tools`` and ``tool_choice`` of a chat body, checked; 400 naming the field otherwise."""
    tools = _tools(body.get("tools"))
    choice = body.get("tool_choice")
    if choice is None:
        choice = "auto" if tools else "none"
    if choice == "none":
        return ToolChoice()
    if not tools:
        raise invalid("tool_choice", f"tool_choice: {choice!r} needs tools")
    if choice in ("auto", "required"):
        return ToolChoice(choice, tools=tools)
    name = (choice.get("function") or {}).get("name") if isinstance(choice, dict) else None
    if not isinstance(choice, dict) or choice.get("type") != "function" or not name:
        raise invalid("tool_choice", "tool_choice: must be 'none', 'auto', 'required' or "
                                     '{"type": "function", "function": {"name": ...}}')
    if name not in {t["function"]["name"] for t in tools}:
        raise invalid("tool_choice", f"tool_choice: function {name!r} is not one of the tools")
    return ToolChoice("function", name, tools)


def _tools(value) -> tuple[dict, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise invalid("tools", "tools: must be a list of function tools")
    tools = []
    for i, tool in enumerate(value):
        where = f"tools[{i}]"
        if not isinstance(tool, dict) or tool.get("type") != "function":
            raise invalid("tools", f"{where}.type: must be 'function'")
        function = tool.get("function")
        if not isinstance(function, dict) or not _NAME.match(str(function.get("name", ""))):
            raise invalid("tools", f"{where}.function.name: must be 1-64 letters, digits, _ "
                                   "or -")
        parameters = function.get("parameters")
        if parameters is not None and not isinstance(parameters, dict):
            raise invalid("tools", f"{where}.function.parameters: must be a JSON Schema object")
        tools.append({"type": "function", "function": dict(function)})
    names = [t["function"]["name"] for t in tools]
    if len(set(names)) != len(names):
        raise invalid("tools", "tools: function names must be unique")
    return tuple(tools)
