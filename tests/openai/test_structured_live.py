"""Structured outputs and log probabilities through the official ``openai`` SDK, against the
frontend in front of a real tritonserver (SmolLM2 on the CPU engine)."""

from __future__ import annotations

import asyncio
import json
import math

import jsonschema
import openai
import pytest
import torch
from pydantic import BaseModel, Field

from .conftest import chat_ids

CITY = [{"role": "user", "content": "Name the largest city of France and its population."}]


class City(BaseModel):
    name: str = Field(max_length=20)
    population: int = Field(ge=0)
    coastal: bool


def test_json_object_and_json_schema_replies_parse(sdk, served_model):
    reply = sdk.chat.completions.create(model=served_model, messages=CITY, max_tokens=60,
                                        temperature=0, response_format={"type": "json_object"})
    json.loads(reply.choices[0].message.content)
    schema = City.model_json_schema()
    for temperature in (0, 1.0):
        reply = sdk.chat.completions.create(
            model=served_model, messages=CITY, max_tokens=80, temperature=temperature, seed=3,
            response_format={"type": "json_schema",
                             "json_schema": {"name": "city", "schema": schema, "strict": True}})
        assert reply.choices[0].finish_reason == "stop"
        jsonschema.validate(json.loads(reply.choices[0].message.content), schema)


def test_sdk_parse_returns_the_pydantic_object_sync_async_and_streamed(sdk, served_model,
                                                                      openai_frontend):
    parsed = sdk.chat.completions.parse(model=served_model, messages=CITY, max_tokens=80,
                                        temperature=0, response_format=City)
    city = parsed.choices[0].message.parsed
    assert isinstance(city, City)

    async def async_parse():
        async with openai.AsyncOpenAI(base_url=f"{openai_frontend.url}/v1", api_key="unused",
                                      max_retries=0) as client:
            reply = await client.chat.completions.parse(
                model=served_model, messages=CITY, max_tokens=80, temperature=0,
                response_format=City)
            return reply.choices[0].message.parsed

    assert asyncio.run(async_parse()) == city
    with sdk.chat.completions.stream(model=served_model, messages=CITY, max_tokens=80,
                                     temperature=0, response_format=City) as stream:
        final = stream.get_final_completion()
    assert final.choices[0].message.parsed == city


def test_completions_take_response_format_too(sdk, served_model):
    schema = {"type": "object", "properties": {"answer": {"enum": ["yes", "no"]}},
              "required": ["answer"], "additionalProperties": False}
    reply = sdk.completions.create(
        model=served_model, prompt="Is Paris in France? Answer in JSON:", max_tokens=30,
        temperature=0, extra_body={"response_format": {
            "type": "json_schema", "json_schema": {"name": "a", "schema": schema}}})
    jsonschema.validate(json.loads(reply.choices[0].text), schema)


def test_a_schema_that_does_not_compile_is_400_naming_response_format(sdk, served_model):
    with pytest.raises(openai.BadRequestError) as info:
        sdk.chat.completions.create(
            model=served_model, messages=CITY, max_tokens=10,
            response_format={"type": "json_schema", "json_schema": {
                "name": "bad", "schema": {"type": "object", "properties": {"a": {"$ref": "#/x"}}}
            }})
    assert info.value.param == "response_format"
    assert "does not compile" in info.value.body["message"]


def test_chat_logprobs_match_transformers_and_the_text(sdk, served_model, codec, hf_model):
    reply = sdk.chat.completions.create(model=served_model, messages=CITY, max_tokens=8,
                                        temperature=0, logprobs=True, top_logprobs=4)
    content = reply.choices[0].logprobs.content
    text = reply.choices[0].message.content
    assert "".join(t.token for t in content) == text
    assert bytes(b for t in content for b in t.bytes).decode("utf-8") == text
    prompt = chat_ids(codec, CITY)
    generated = codec.tokenizer(text, add_special_tokens=False).input_ids
    with torch.inference_mode():
        logits = hf_model(torch.tensor([prompt + generated])).logits[0].float()
    expected = torch.log_softmax(logits, -1)[len(prompt) - 1:]
    for step, token in enumerate(content):
        values, ids = expected[step].topk(4)
        assert [t.token for t in token.top_logprobs] == [codec.tokenizer.decode([i])
                                                         for i in ids.tolist()]
        assert [t.logprob for t in token.top_logprobs] == pytest.approx(values.tolist(),
                                                                        abs=1e-4)
        assert token.logprob == token.top_logprobs[0].logprob


def test_streamed_logprobs_equal_whole_and_completions_shape(sdk, served_model):
    whole = sdk.chat.completions.create(model=served_model, messages=CITY, max_tokens=8,
                                        temperature=0, logprobs=True, top_logprobs=2)
    chunks = list(sdk.chat.completions.create(model=served_model, messages=CITY, max_tokens=8,
                                              temperature=0, logprobs=True, top_logprobs=2,
                                              stream=True))
    streamed = [t for c in chunks if c.choices and c.choices[0].logprobs
                for t in c.choices[0].logprobs.content]
    # The second request reuses the first one's cached prompt blocks, so its floats may
    # differ in the last bits: tokens and bytes must match exactly, values closely.
    def shape(content):
        return [(t.token, t.bytes, [(top.token, top.bytes) for top in t.top_logprobs])
                for t in content]

    def values(content):
        return [v for t in content for v in [t.logprob] + [top.logprob for top in t.top_logprobs]]

    assert shape(streamed) == shape(whole.choices[0].logprobs.content)
    assert values(streamed) == pytest.approx(values(whole.choices[0].logprobs.content), abs=1e-4)
    reply = sdk.completions.create(model=served_model, prompt="The capital of France is",
                                   max_tokens=6, temperature=0, logprobs=3)
    logprobs = reply.choices[0].logprobs
    assert "".join(logprobs.tokens) == reply.choices[0].text
    assert logprobs.text_offset == [sum(map(len, logprobs.tokens[:i]))
                                    for i in range(len(logprobs.tokens))]
    for chosen, top, token in zip(logprobs.token_logprobs, logprobs.top_logprobs,
                                  logprobs.tokens):
        assert len(top) == 3 and top[token] == chosen and chosen <= 0
        assert math.isclose(max(top.values()), chosen)
