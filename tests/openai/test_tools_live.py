"""Tool calls through the official ``openai`` SDK against the frontend and a real tritonserver
(SmolLM2, whose chat template does not know tools: they reach it as text)."""

from __future__ import annotations

import asyncio
import json

import jsonschema
import openai
import pytest

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather in a city",
    "parameters": {"type": "object",
                   "properties": {"city": {"type": "string", "maxLength": 30},
                                  "unit": {"enum": ["celsius", "fahrenheit"]}},
                   "required": ["city", "unit"], "additionalProperties": False}}}
TIME = {"type": "function", "function": {
    "name": "get_time", "parameters": {"type": "object",
                                       "properties": {"zone": {"type": "string",
                                                               "maxLength": 30}},
                                       "required": ["zone"], "additionalProperties": False}}}
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]


def check_call(call, tools):
    spec = {t["function"]["name"]: t["function"]["parameters"] for t in tools}
    assert call.type == "function" and call.id.startswith("call_")
    jsonschema.validate(json.loads(call.function.arguments), spec[call.function.name])


def test_a_named_function_is_called_with_valid_arguments(sdk, served_model):
    reply = sdk.chat.completions.create(
        model=served_model, messages=ASK, max_tokens=60, temperature=0, tools=[WEATHER, TIME],
        tool_choice={"type": "function", "function": {"name": "get_weather"}})
    choice = reply.choices[0]
    assert choice.message.content is None and choice.finish_reason == "stop"
    [call] = choice.message.tool_calls
    assert call.function.name == "get_weather"
    check_call(call, [WEATHER, TIME])


@pytest.mark.parametrize("temperature", [0, 1.0])
def test_required_calls_one_of_the_tools_streamed_as_whole(sdk, served_model, temperature):
    ask = dict(model=served_model, messages=ASK, max_tokens=60, temperature=temperature,
               seed=11, tools=[WEATHER, TIME], tool_choice="required")
    whole = sdk.chat.completions.create(**ask)
    assert whole.choices[0].finish_reason == "tool_calls"
    [call] = whole.choices[0].message.tool_calls
    check_call(call, [WEATHER, TIME])
    chunks = list(sdk.chat.completions.create(**ask, stream=True))
    deltas = [d for c in chunks if c.choices for d in (c.choices[0].delta.tool_calls or [])]
    assert [(d.function.name, d.function.arguments) for d in deltas] == \
        [(call.function.name, call.function.arguments)]
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"
    assert all(not (c.choices and c.choices[0].delta.content) for c in chunks)


def test_a_tool_round_trip_ends_in_an_answer(sdk, served_model, openai_frontend):
    first = sdk.chat.completions.create(model=served_model, messages=ASK, max_tokens=60,
                                        temperature=0, tools=[WEATHER], tool_choice="required")
    call = first.choices[0].message.tool_calls[0]
    history = ASK + [first.choices[0].message.model_dump(exclude_none=True),
                     {"role": "tool", "tool_call_id": call.id,
                      "content": json.dumps({"temperature": 18, "sky": "clear"})}]

    async def answer():
        async with openai.AsyncOpenAI(base_url=f"{openai_frontend.url}/v1", api_key="unused",
                                      max_retries=0) as client:
            stream = await client.chat.completions.create(
                model=served_model, messages=history, max_tokens=24, temperature=0,
                tools=[WEATHER], tool_choice="none", stream=True)
            return "".join([c.choices[0].delta.content or "" async for c in stream
                            if c.choices])

    text = asyncio.run(answer())
    whole = sdk.chat.completions.create(model=served_model, messages=history, max_tokens=24,
                                        temperature=0, tools=[WEATHER], tool_choice="none")
    assert text.strip() and text == whole.choices[0].message.content
    assert whole.choices[0].message.tool_calls is None


def test_auto_answers_with_content_or_one_valid_call(sdk, served_model):
    reply = sdk.chat.completions.create(model=served_model, messages=ASK, max_tokens=60,
                                        temperature=0, tools=[WEATHER])
    message = reply.choices[0].message
    if message.tool_calls:
        assert reply.choices[0].finish_reason == "tool_calls" and message.content is None
        check_call(message.tool_calls[0], [WEATHER])
    else:
        assert message.content and reply.choices[0].finish_reason in ("stop", "length")


@pytest.mark.parametrize("extra, param", [
    ({"tool_choice": {"type": "function", "function": {"name": "nope"}}}, "tool_choice"),
    ({"tool_choice": "required", "response_format": {"type": "json_object"}},
     "response_format"),
    ({"tools": [{"type": "function", "function": {"name": "bad name"}}]}, "tools"),
    ({"tools": [], "tool_choice": "required"}, "tool_choice"),
])
def test_tool_requests_that_cannot_work_are_400_naming_the_field(sdk, served_model, extra,
                                                                 param):
    ask = {"tools": [WEATHER], **extra}
    with pytest.raises(openai.BadRequestError) as info:
        sdk.chat.completions.create(model=served_model, messages=ASK, max_tokens=4, **ask)
    assert info.value.param == param
