"""Request bodies -> GenerationCall, without a server."""

from __future__ import annotations

import json

import pytest

from tritonllm.openai.errors import OpenAIError
from tritonllm.openai.protocol import (CHAT, COMPLETIONS, parse_body, parse_chat,
                                       parse_completion)

MESSAGES = [{"role": "user", "content": "Hi"}]


def chat(**fields):
    return parse_chat({"model": "m", "messages": MESSAGES, **fields}, default_max_tokens=64)


def completion(**fields):
    return parse_completion({"model": "m", "prompt": "Hi", **fields}, default_max_tokens=64)


def refusal(parse, **fields) -> OpenAIError:
    with pytest.raises(OpenAIError) as info:
        parse(**fields)
    assert info.value.status == 400
    return info.value


def test_chat_defaults_are_openai_sampling_with_the_default_limit():
    call = chat()
    assert call.endpoint == CHAT and call.chat and call.messages == tuple(MESSAGES)
    assert call.options.max_tokens == 64
    assert (call.options.temperature, call.options.top_p) == (1.0, 1.0)
    assert not call.stream and not call.include_usage


def test_temperature_zero_is_greedy():
    options = chat(temperature=0, top_p=0.5).options
    assert (options.temperature, options.top_p) == (0.0, None)


def test_a_sampled_request_without_seed_gets_a_fresh_one():
    # The engine treats an absent seed as 0 (TensorRT-LLM's default): same text every time.
    seeds = {completion(temperature=0.8).options.seed for _ in range(3)}
    assert len(seeds) == 3 and None not in seeds
    assert chat(temperature=0).options.seed is None  # greedy needs none


def test_fields_map_onto_generation_options():
    options = completion(max_tokens=7, temperature=0.5, top_p=0.9, seed=3, stop="\n",
                         presence_penalty=1, frequency_penalty=-1, top_k=5, min_tokens=2,
                         repetition_penalty=1.1).options
    assert (options.max_tokens, options.temperature, options.top_p, options.seed) == \
        (7, 0.5, 0.9, 3)
    assert options.stop == ("\n",)
    assert (options.presence_penalty, options.frequency_penalty) == (1.0, -1.0)
    assert (options.top_k, options.min_tokens, options.repetition_penalty) == (5, 2, 1.1)
    assert options.return_num_tokens


def test_max_completion_tokens_wins_and_names_itself():
    call = chat(max_tokens=20, max_completion_tokens=3)
    assert call.options.max_tokens == 3
    assert call.renames["max_tokens"] == "max_completion_tokens"
    assert chat(max_tokens=20).renames["max_tokens"] == "max_tokens"


def test_content_parts_are_joined_and_roles_kept():
    call = chat(messages=[{"role": "developer", "content": "Be brief."},
                          {"role": "user", "content": [{"type": "text", "text": "a"},
                                                       {"type": "text", "text": "b"}]}])
    assert call.messages == ({"role": "developer", "content": "Be brief."},
                             {"role": "user", "content": "a\nb"})


def test_stream_options_and_echo():
    assert chat(stream=True, stream_options={"include_usage": True}).include_usage
    assert completion(echo=True).echo
    assert completion(prompt=["one prompt"]).prompt == "one prompt"
    assert refusal(chat, stream_options={"include_usage": True}).param == "stream_options"


def test_noop_values_of_unsupported_fields_are_accepted():
    chat(n=1, tools=[], tool_choice="none", response_format={"type": "text"}, logit_bias={},
         logprobs=False, top_logprobs=0, user="u", metadata={"k": "v"}, store=False,
         parallel_tool_calls=True)
    completion(n=1, best_of=1, suffix=None, logprobs=None, echo=False)


@pytest.mark.parametrize("field, value", [
    ("n", 2), ("tools", [{"type": "function"}]), ("tool_choice", "auto"),
    ("response_format", {"type": "yaml"}), ("logit_bias", {"1": 2}),
    ("logprobs", 1), ("top_logprobs", 2), ("top_logprobs", 21), ("audio", {}), ("store", True),
    ("ignore_eos", True), ("frobnicate", 1)])
def test_chat_refuses_each_unsupported_field_by_name(field, value):
    error = refusal(chat, **{field: value})
    assert error.param == field and error.message.startswith(field)
    assert error.body()["error"]["param"] == field


@pytest.mark.parametrize("fields, param", [
    ({"temperature": 2.5}, "temperature"), ({"temperature": "hot"}, "temperature"),
    ({"top_p": 0}, "top_p"), ({"top_p": 1.5}, "top_p"), ({"seed": -1}, "seed"),
    ({"max_tokens": 0}, "max_tokens"), ({"max_tokens": 1.5}, "max_tokens"),
    ({"presence_penalty": 3}, "presence_penalty"), ({"stop": ["", "x"]}, "stop"),
    ({"stop": 5}, "stop"), ({"stream": "yes"}, "stream"), ({"model": ""}, "model"),
    ({"prompt": ["a", "b"]}, "prompt"), ({"prompt": [1, 2]}, "prompt"), ({"prompt": ""}, "prompt"),
    ({"best_of": 2}, "best_of"), ({"logprobs": 6}, "logprobs"), ({"suffix": "x"}, "suffix"),
    ({"response_format": {"type": "json_schema", "json_schema": {"schema": {}}}},
     "response_format"),
    ({"stream": True, "stream_options": {"continuous_usage_stats": True}},
     "stream_options.continuous_usage_stats"),
])
def test_completion_refuses_bad_values_naming_the_field(fields, param):
    assert refusal(completion, **fields).param == param


@pytest.mark.parametrize("messages", [
    [], "Hi", [{"role": "tool", "content": "x"}], [{"role": "user"}],
    [{"role": "user", "content": "x", "name": "bob"}],
    [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]])
def test_bad_messages_are_refused(messages):
    assert refusal(chat, messages=messages).param.startswith("messages")


def test_body_must_be_a_json_object():
    assert parse_body(b'{"a": 1}') == {"a": 1}
    for raw in (b"{", b"[1]", b"\xff"):
        with pytest.raises(OpenAIError) as info:
            parse_body(raw)
        assert info.value.status == 400


def test_endpoint_names():
    assert completion().endpoint == COMPLETIONS


def test_response_format_becomes_the_engine_guide():
    assert chat(response_format={"type": "json_object"}).options.guide_type == "json"
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    call = chat(response_format={"type": "json_schema",
                                 "json_schema": {"name": "s", "schema": schema, "strict": True}})
    assert (call.options.guide_type, json.loads(call.options.guide)) == ("json_schema", schema)
    assert call.renames["guided_decoding_guide"] == "response_format"
    assert completion(response_format={"type": "text"}).options.guide_type is None


def test_logprobs_ask_the_engine_for_log_probs_and_alternatives():
    call = chat(logprobs=True, top_logprobs=5)
    assert call.logprobs == 5 and call.options.return_log_probs
    assert call.options.num_top_log_probs == 5
    plain = chat(logprobs=True)
    assert plain.logprobs == 0 and plain.options.num_top_log_probs is None
    assert chat().logprobs is None and not chat().options.return_log_probs
    assert completion(logprobs=2).options.num_top_log_probs == 2
    assert completion(logprobs=2).renames["num_top_log_probs"] == "logprobs"
