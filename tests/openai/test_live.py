"""The official ``openai`` SDK (sync and async, streamed and not) against the frontend in
front of a real tritonserver serving SmolLM2 on the CPU engine. No mocks: answers are compared
with transformers' greedy ``generate`` on the same (chat-templated) prompt."""

from __future__ import annotations

import asyncio

import openai
import pytest
import requests

from tests.helpers import hf_greedy, wait_for_idle_cache

from .conftest import chat_ids

CAPITAL = [{"role": "user", "content": "What is the capital of France?"}]
HAIKU = [{"role": "system", "content": "You are a poet."},
         {"role": "user", "content": "Write a haiku about the sea."}]


@pytest.mark.parametrize("messages", [CAPITAL, HAIKU], ids=["capital", "system+haiku"])
def test_chat_greedy_equals_transformers(sdk, served_model, codec, hf_model, messages):
    prompt_ids = chat_ids(codec, messages)
    expected = hf_greedy(hf_model, prompt_ids, 24)
    reply = sdk.chat.completions.create(model=served_model, messages=messages, max_tokens=24,
                                        temperature=0)
    assert reply.id.startswith("chatcmpl-") and reply.object == "chat.completion"
    assert reply.model == served_model and reply.created > 0
    choice = reply.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content == codec.decode(expected)
    assert choice.finish_reason == ("length" if len(expected) == 24 else "stop")
    assert reply.usage.prompt_tokens == len(prompt_ids)
    # the end token counts when the reply ended on it, as vLLM counts
    generated = len(expected) + (choice.finish_reason == "stop")
    assert reply.usage.completion_tokens == generated
    assert reply.usage.total_tokens == len(prompt_ids) + generated


def test_chat_stream_equals_whole_with_usage(sdk, served_model):
    messages = [{"role": "user", "content": "Repeat exactly: 🎉🎉 你好世界 🚀"}]
    whole = sdk.chat.completions.create(model=served_model, messages=messages, max_tokens=30,
                                        temperature=0)
    chunks = list(sdk.chat.completions.create(model=served_model, messages=messages,
                                              max_tokens=30, temperature=0, stream=True,
                                              stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    texts = [c.choices[0].delta.content or "" for c in chunks if c.choices]
    assert len(texts) > 5
    assert "".join(texts) == whole.choices[0].message.content
    assert any(ord(ch) > 0x2E80 for ch in "".join(texts))
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == \
        whole.choices[0].finish_reason
    assert chunks[-1].choices == [] and chunks[-1].usage == whole.usage
    assert all(c.usage is None for c in chunks[:-1])
    assert len({c.id for c in chunks}) == 1 and chunks[0].id.startswith("chatcmpl-")


def test_completion_greedy_equals_transformers(sdk, served_model, codec, hf_model):
    prompt = "def fibonacci(n):"
    expected = hf_greedy(hf_model, codec.encode(prompt), 20)
    reply = sdk.completions.create(model=served_model, prompt=prompt, max_tokens=20,
                                   temperature=0)
    assert reply.id.startswith("cmpl-") and reply.object == "text_completion"
    assert reply.choices[0].text == codec.decode(expected)
    assert reply.usage.prompt_tokens == len(codec.encode(prompt))
    assert reply.usage.completion_tokens == len(expected) + (reply.choices[0].finish_reason
                                                             == "stop")
    streamed = sdk.completions.create(model=served_model, prompt=prompt, max_tokens=20,
                                      temperature=0, stream=True)
    assert "".join(c.choices[0].text for c in streamed) == reply.choices[0].text


def test_completion_echo_and_list_of_one_prompt(sdk, served_model):
    prompt = "The capital of France is"
    plain = sdk.completions.create(model=served_model, prompt=[prompt], max_tokens=6,
                                   temperature=0)
    echoed = sdk.completions.create(model=served_model, prompt=prompt, max_tokens=6,
                                    temperature=0, echo=True)
    assert echoed.choices[0].text == prompt + plain.choices[0].text
    streamed = sdk.completions.create(model=served_model, prompt=prompt, max_tokens=6,
                                      temperature=0, echo=True, stream=True)
    assert "".join(c.choices[0].text for c in streamed) == echoed.choices[0].text


@pytest.mark.parametrize("stop", [".", ["ar", "zzz"]], ids=["engine-word", "mid-token"])
def test_stop_strings_cut_the_text(sdk, served_model, codec, hf_model, stop):
    prompt = "The capital of France is"
    full = codec.decode(hf_greedy(hf_model, codec.encode(prompt), 16))
    words = [stop] if isinstance(stop, str) else stop
    cut = min(full.index(w) for w in words if w in full)
    reply = sdk.completions.create(model=served_model, prompt=prompt, max_tokens=16,
                                   temperature=0, stop=stop)
    assert reply.choices[0].text == full[:cut]
    assert reply.choices[0].finish_reason == "stop"
    streamed = sdk.completions.create(model=served_model, prompt=prompt, max_tokens=16,
                                      temperature=0, stop=stop, stream=True)
    assert "".join(c.choices[0].text for c in streamed) == full[:cut]


def test_max_completion_tokens_wins_over_max_tokens(sdk, served_model):
    reply = sdk.chat.completions.create(model=served_model, messages=HAIKU, max_tokens=20,
                                        max_completion_tokens=3, temperature=0)
    assert reply.usage.completion_tokens == 3
    assert reply.choices[0].finish_reason == "length"


def test_default_max_tokens_applies_without_a_limit(sdk, served_model, openai_frontend):
    reply = sdk.completions.create(model=served_model, prompt="Once upon a time",
                                   temperature=0, stop=None)
    assert reply.usage.completion_tokens <= openai_frontend.settings.default_max_tokens


def test_seed_makes_sampling_reproducible(sdk, served_model):
    ask = dict(model=served_model, prompt="Once upon a time", max_tokens=12, temperature=1.0)
    first = sdk.completions.create(seed=1234, **ask).choices[0].text
    again = sdk.completions.create(seed=1234, **ask).choices[0].text
    others = {sdk.completions.create(seed=s, **ask).choices[0].text for s in (1, 2, 3)}
    assert first == again
    assert len(others | {first}) > 1  # sampling, not greedy


def test_penalties_are_passed_on(sdk, served_model):
    ask = dict(model=served_model, prompt="one one one one one", max_tokens=12, temperature=0)
    plain = sdk.completions.create(**ask).choices[0].text
    penalised = sdk.completions.create(frequency_penalty=2.0, presence_penalty=2.0,
                                       **ask).choices[0].text
    assert plain != penalised


def test_async_sdk_concurrent_and_streamed(openai_frontend, served_model, sdk):
    expected = sdk.chat.completions.create(model=served_model, messages=CAPITAL,
                                           max_tokens=12, temperature=0)

    async def run():
        async with openai.AsyncOpenAI(base_url=f"{openai_frontend.url}/v1", api_key="x",
                                      max_retries=0) as client:
            ask = dict(model=served_model, messages=CAPITAL, max_tokens=12, temperature=0)
            whole = await asyncio.gather(*(client.chat.completions.create(**ask)
                                           for _ in range(3)))
            stream = await client.chat.completions.create(stream=True, **ask)
            texts = [c.choices[0].delta.content or "" async for c in stream if c.choices]
            return whole, "".join(texts)

    whole, streamed = asyncio.run(run())
    content = expected.choices[0].message.content
    assert [w.choices[0].message.content for w in whole] == [content] * 3
    assert streamed == content


# --- refusals --------------------------------------------------------------------------------

UNSUPPORTED_CHAT = {
    "n": {"n": 2},
    "tools": {"tools": [{"type": "function", "function": {"name": "f g"}}]},
    "tool_choice": {"tool_choice": "auto"},  # without tools
    "response_format": {"response_format": {"type": "xml"}},
    "logit_bias": {"logit_bias": {"42": 10}},
    "top_logprobs": {"top_logprobs": 3},  # without logprobs: true
    "audio": {"audio": {"voice": "alloy", "format": "wav"}},
}


@pytest.mark.parametrize("field", sorted(UNSUPPORTED_CHAT))
def test_unsupported_chat_field_gets_400_naming_it(sdk, served_model, field):
    with pytest.raises(openai.BadRequestError) as info:
        sdk.chat.completions.create(model=served_model, messages=CAPITAL, max_tokens=4,
                                    **UNSUPPORTED_CHAT[field])
    assert info.value.param in (field, "logprobs")
    assert info.value.body["message"].startswith(info.value.param)


@pytest.mark.parametrize("extra, param", [
    ({"n": 2}, "n"), ({"best_of": 3}, "best_of"), ({"suffix": "x"}, "suffix"),
    ({"logprobs": 6}, "logprobs"), ({"extra_body": {"ignore_eos": True}}, "ignore_eos"),
    ({"prompt": ["a", "b"]}, "prompt"), ({"prompt": [1, 2, 3]}, "prompt"),
])
def test_unsupported_completion_field_gets_400_naming_it(sdk, served_model, extra, param):
    ask = {"model": served_model, "prompt": "Hi", "max_tokens": 4, **extra}
    with pytest.raises(openai.BadRequestError) as info:
        sdk.completions.create(**ask)
    assert info.value.param == param


def test_unknown_model_is_404(sdk):
    with pytest.raises(openai.NotFoundError) as info:
        sdk.chat.completions.create(model="gpt-4o", messages=CAPITAL, max_tokens=4)
    assert info.value.param == "model"
    with pytest.raises(openai.NotFoundError):
        sdk.models.retrieve("gpt-4o")


def test_models_lists_the_served_model(sdk, served_model):
    assert [m.id for m in sdk.models.list()] == [served_model]
    assert sdk.models.retrieve(served_model).id == served_model


def test_prompt_too_long_is_400_with_the_limit(sdk, served_model, triton_server):
    prompt = "hello " * (triton_server.engine.max_input_len + 10)
    with pytest.raises(openai.BadRequestError) as info:
        sdk.completions.create(model=served_model, prompt=prompt, max_tokens=4)
    assert info.value.param == "prompt"
    assert f"max_input_len ({triton_server.engine.max_input_len})" in info.value.message
    with pytest.raises(openai.BadRequestError) as info:
        sdk.completions.create(model=served_model, prompt="Hi", max_tokens=100000)
    assert info.value.param == "max_tokens"
    assert f"max_seq_len ({triton_server.engine.max_seq_len})" in info.value.message


def test_bad_json_and_bad_values_are_400(openai_frontend, served_model):
    url = f"{openai_frontend.url}/v1/chat/completions"
    resp = requests.post(url, data=b'{"model": ', headers={"content-type": "application/json"})
    assert resp.status_code == 400 and "JSON" in resp.json()["error"]["message"]
    for body, param in [({"model": served_model, "messages": CAPITAL, "temperature": 5}, "temperature"),
                        ({"model": served_model, "messages": []}, "messages"),
                        ({"model": served_model, "messages": CAPITAL, "stop": 3}, "stop")]:
        resp = requests.post(url, json=body)
        assert resp.status_code == 400, resp.text
        assert resp.json()["error"]["param"] == param


# --- health, metrics, cancellation -----------------------------------------------------------

def test_health_and_metrics(openai_frontend, sdk, served_model):
    assert requests.get(f"{openai_frontend.url}/health").status_code == 200
    sdk.chat.completions.create(model=served_model, messages=CAPITAL, max_tokens=4,
                                temperature=0)
    text = requests.get(f"{openai_frontend.url}/metrics").text
    assert 'tritonllm_openai_requests_total{endpoint="chat.completions",status="200"}' in text
    for name in ("time_to_first_token_seconds", "inter_token_latency_seconds",
                 "e2e_request_latency_seconds"):
        assert f'tritonllm_openai_{name}_count{{endpoint="chat.completions"}}' in text
    assert "tritonllm_openai_generation_tokens_total" in text


# The disconnect tests show the path end to end: a client that leaves becomes an engine cancel
# (the ``cancelled`` counter) and the cache returns to full. That the free comes within one engine
# step of the cancel reaching the engine is counted with the engine's step counter in
# tests/engine/test_cancel_steps.py; the time from the TCP close to that cancel is network and
# event-loop time, which no step count here could bound without timing.
def test_stream_disconnect_frees_the_kv_cache(openai_frontend, served_model, triton_server):
    before = wait_for_idle_cache(triton_server)
    body = {"model": served_model, "prompt": "Tell me a very long story.", "max_tokens": 1500,
            "temperature": 0, "min_tokens": 1500, "stream": True}
    with requests.post(f"{openai_frontend.url}/v1/completions", json=body, stream=True,
                       timeout=60) as resp:
        assert resp.status_code == 200
        lines = resp.iter_lines()
        for _ in range(6):
            next(lines)
    # Cancelled (min_tokens would otherwise force all 1500 tokens) and the cache all free.
    metrics = wait_for_idle_cache(triton_server, before["cancelled"] + 1)
    assert metrics["cancelled"] == before["cancelled"] + 1
    assert metrics["free_kv_tokens"] == metrics["total_kv_tokens"]


def test_non_streamed_disconnect_frees_the_kv_cache(openai_frontend, served_model,
                                                    triton_server):
    before = wait_for_idle_cache(triton_server)
    body = {"model": served_model, "prompt": "Tell me a very long story.", "max_tokens": 1500,
            "temperature": 0, "min_tokens": 1500}
    with pytest.raises(requests.exceptions.ReadTimeout):
        requests.post(f"{openai_frontend.url}/v1/completions", json=body, timeout=3)
    metrics = wait_for_idle_cache(triton_server, before["cancelled"] + 1)
    assert metrics["cancelled"] == before["cancelled"] + 1
    assert metrics["free_kv_tokens"] == metrics["total_kv_tokens"]
