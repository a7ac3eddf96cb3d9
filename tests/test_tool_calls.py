"""How tool calls are written, read, and shown to chat templates with and without tools."""

import json

import pytest

from tritonllm.tokenizer import TextCodec, parse_messages
from tritonllm.tool_calls import (call_schema, messages_for_plain_template, parse_call,
                                  template_knows_tools)

TOOL = {"type": "function", "function": {"name": "add", "parameters": {
    "type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}}}
CALL = {"id": "call_1", "type": "function",
        "function": {"name": "add", "arguments": '{"a": 2}'}}
# A minimal template that knows tools, as Llama 3.1's and Qwen 2.5's do.
TOOLS_TEMPLATE = ("{% if tools %}TOOLS:{{ tools | map(attribute='function.name') | join(',') }}"
                  ";{% endif %}{% for m in messages %}{{ m.role }}:"
                  "{% if m.tool_calls %}CALL {{ m.tool_calls[0].function.name }}"
                  "{% else %}{{ m.content }}{% endif %};{% endfor %}assistant:")


@pytest.mark.parametrize("text, expected", [
    ('{"name": "add", "arguments": {"a": 2}}', ("add", '{"a": 2}')),
    ('<|python_tag|>{"name": "add", "parameters": {"a": 2}}', ("add", '{"a": 2}')),  # Llama 3.1
    ('  {"name": "add", "arguments": {}}\n', ("add", "{}")),
    ('{"name": "sub", "arguments": {}}', None),  # not a tool of the request
    ('{"name": "add", "arguments": {}, "extra": 1}', None),
    ("The answer is 4.", None),
    ('{"name": "add", "arguments": [1]}', None),
])
def test_parse_call_reads_one_call_or_nothing(text, expected):
    assert parse_call(text, {"add"}) == expected


def test_call_schema_constrains_name_and_arguments():
    one = call_schema([TOOL["function"]])
    assert one["properties"]["name"] == {"const": "add"}
    assert one["properties"]["arguments"] == TOOL["function"]["parameters"]
    two = call_schema([TOOL["function"], {"name": "noop"}])
    assert [o["properties"]["name"]["const"] for o in two["anyOf"]] == ["add", "noop"]
    assert two["anyOf"][1]["properties"]["arguments"] == {"type": "object"}


def test_a_plain_template_gets_the_tools_and_calls_as_text():
    messages = [{"role": "system", "content": "Be brief."},
                {"role": "user", "content": "2?"},
                {"role": "assistant", "content": None, "tool_calls": [CALL]},
                {"role": "tool", "tool_call_id": "call_1", "content": "4"}]
    plain = messages_for_plain_template(messages, [TOOL])
    assert plain[0]["content"].startswith("Be brief.\n\nYou can call these functions:")
    assert json.dumps(TOOL["function"]) in plain[0]["content"]
    assert json.loads(plain[2]["content"]) == {"name": "add", "arguments": {"a": 2}}
    assert plain[3] == {"role": "tool", "content": "4"}
    assert messages_for_plain_template(messages[1:2], [TOOL])[0]["role"] == "system"


def test_templates_that_know_tools_get_them_as_they_are(model_dir):
    codec = TextCodec.from_dir(model_dir)
    assert not template_knows_tools(codec.tokenizer.chat_template)  # SmolLM2's
    codec.tokenizer.chat_template = TOOLS_TEMPLATE
    assert template_knows_tools(TOOLS_TEMPLATE)
    text = json.dumps({"messages": [{"role": "user", "content": "2?"},
                                    {"role": "assistant", "content": None,
                                     "tool_calls": [CALL]}], "tools": [TOOL]})
    rendered = codec.tokenizer.decode(codec.encode_chat(text))
    assert rendered == "TOOLS:add;user:2?;assistant:CALL add;assistant:"


def test_text_input_with_tools_is_checked():
    messages, tools = parse_messages(json.dumps({"messages": [{"role": "user", "content": "x"}],
                                                 "tools": [TOOL]}))
    assert tools == [TOOL] and messages[0]["content"] == "x"
    with pytest.raises(ValueError, match='"tools" must be a list'):
        parse_messages(json.dumps({"messages": [{"role": "user", "content": "x"}],
                                   "tools": [{"name": "add"}]}))
