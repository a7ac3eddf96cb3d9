"""Response bodies parse as the openai SDK's own types; errors map onto OpenAI's shape."""

from __future__ import annotations

import json

from openai.types import Completion, Model
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from tritonllm.client import ConnectionError, InvalidRequestError, ServerError
from tritonllm.openai.errors import from_client_error
from tritonllm.openai.generation import Finish
from tritonllm.openai.protocol import CHAT, COMPLETIONS
from tritonllm.openai.responses import DONE, ResponseHead, model_card, sse

FINISH = Finish("length", prompt_tokens=5, completion_tokens=3)


def test_chat_body_and_chunks_parse_as_the_sdk_types():
    head = ResponseHead(CHAT, "m")
    body = ChatCompletion.model_validate(head.body("Hi there", FINISH))
    assert body.id.startswith("chatcmpl-") and body.choices[0].message.content == "Hi there"
    assert body.choices[0].finish_reason == "length"
    assert (body.usage.prompt_tokens, body.usage.completion_tokens, body.usage.total_tokens) \
        == (5, 3, 8)
    first = ChatCompletionChunk.model_validate(head.chunk(first=True))
    assert first.choices[0].delta.role == "assistant" and first.id == body.id
    delta = ChatCompletionChunk.model_validate(head.chunk("x", with_usage_field=True))
    assert delta.choices[0].delta.content == "x" and delta.usage is None
    last = ChatCompletionChunk.model_validate(head.usage_chunk(FINISH))
    assert last.choices == [] and last.usage.total_tokens == 8


def test_completion_body_and_chunks_parse_as_the_sdk_types():
    head = ResponseHead(COMPLETIONS, "m")
    body = Completion.model_validate(head.body(" Paris", FINISH))
    assert body.id.startswith("cmpl-") and body.choices[0].text == " Paris"
    # Mid-stream completion chunks carry finish_reason null, as OpenAI's do (the SDK's type
    # admits only the final values; it builds stream chunks without validating them).
    chunk = head.chunk(" P")
    assert chunk["choices"] == [{"index": 0, "text": " P", "logprobs": None,
                                 "finish_reason": None}]
    assert chunk["object"] == "text_completion" and chunk["id"] == body.id
    end = Completion.model_validate(head.chunk(finish_reason="stop"))
    assert end.choices[0].finish_reason == "stop"


def test_sse_framing():
    assert sse({"a": "é"}) == 'data: {"a": "é"}\n\n'
    assert json.loads(sse({"a": 1})[len("data: "):]) == {"a": 1}
    assert DONE == "data: [DONE]\n\n"
    assert Model.model_validate(model_card("m", 1)).id == "m"


def test_server_refusals_name_the_users_field():
    exc = InvalidRequestError("in ensemble 'ensemble', max_tokens: prompt (9 tokens) + "
                              "max_tokens (5000) is over max_seq_len (4096); ask for at most "
                              "4087 tokens")
    error = from_client_error(exc, {"max_tokens": "max_completion_tokens"})
    assert (error.status, error.param) == (400, "max_completion_tokens")
    assert error.message.startswith("max_completion_tokens: prompt (9 tokens)")
    assert "max_seq_len (4096)" in error.message
    prompt = from_client_error(InvalidRequestError("text_input: the prompt is 3000 tokens, "
                                                   "over max_input_len (2048)"),
                               {"text_input": "messages"})
    assert prompt.param == "messages" and "max_input_len (2048)" in prompt.message


def test_transport_failures_map_to_5xx():
    assert from_client_error(ConnectionError("down")).status == 503
    assert from_client_error(ServerError("internal error: boom")).status == 500
    body = from_client_error(ConnectionError("down")).body()["error"]
    assert set(body) == {"message", "type", "param", "code"}


def test_an_input_the_deployed_ensemble_lacks_is_400_naming_the_field():
    # Triton's wording (infer_request.cc) for an input its model config does not declare, as a
    # GPU deployment answers num_top_log_probs, our CPU-engine extension
    exc = InvalidRequestError("[request id: 7] unexpected inference input 'num_top_log_probs' "
                              "for model 'ensemble'")
    error = from_client_error(exc, {"num_top_log_probs": "top_logprobs"})
    assert (error.status, error.param, error.code) == (400, "top_logprobs",
                                                       "unsupported_parameter")
    assert "chosen token's log probability only" in error.message
