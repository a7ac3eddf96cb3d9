"""Guided decoding and top log-probabilities through the REAL tritonserver's ensemble, with
TensorRT-LLM's input names (``guided_decoding_guide_type`` / ``guided_decoding_guide``) and our
``num_top_log_probs`` extension, over both protocols, streamed and not."""

import json

import jsonschema
import pytest

from tritonllm.client import Client, InvalidRequestError

SCHEMA = {"type": "object",
          "properties": {"city": {"type": "string", "maxLength": 20},
                         "population": {"type": "integer", "minimum": 0}},
          "required": ["city", "population"], "additionalProperties": False}
CHAT = [{"role": "user", "content": "Give the largest city of France and its population."}]


def _url(server, protocol):
    return server.http_url if protocol == "http" else server.grpc_url


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_json_schema_guide_through_the_ensemble(triton_server, protocol):
    with Client(protocol=protocol, url=_url(triton_server, protocol)) as client:
        options = dict(max_tokens=60, guide_type="json_schema", guide=json.dumps(SCHEMA))
        whole = client.chat(CHAT, **options)
        streamed = "".join(chunk.text for chunk in client.chat_stream(CHAT, **options))
    jsonschema.validate(json.loads(whole.text), SCHEMA)
    assert streamed == whole.text


def test_a_guide_that_does_not_compile_is_refused_by_name(triton_server):
    with Client(protocol="grpc", url=triton_server.grpc_url) as client:
        with pytest.raises(InvalidRequestError, match="guided_decoding_guide: the regex guide "
                                                      "does not compile"):
            client.generate("x", max_tokens=4, guide_type="regex", guide="([a-z]")
        with pytest.raises(InvalidRequestError, match="guided_decoding_guide_type: must be one"):
            client.generate("x", max_tokens=4, guide_type="yaml", guide="a: 1")
        text = client.generate("Count: 1, 2,", max_tokens=6, guide_type="regex",
                               guide=" [0-9]+(, [0-9]+)*").text
    assert text.startswith(" 3")


@pytest.mark.parametrize("stream", [False, True])
def test_top_log_probs_hold_the_chosen_tokens_log_prob(triton_server, stream):
    with Client(protocol="grpc", url=triton_server.grpc_url) as client:
        options = dict(max_tokens=6, return_log_probs=True, num_top_log_probs=3)
        if stream:
            chunks = list(client.chat_stream(CHAT, **options))
            ids = [t for c in chunks for t in c.token_ids]
            chosen = [p for c in chunks for p in c.log_probs]
            top = [t for c in chunks for t in c.top_log_probs]
        else:
            whole = client.chat(CHAT, **options)
            ids, chosen, top = whole.token_ids, whole.log_probs, whole.top_log_probs
    assert len(ids) == len(chosen) == len(top) == 6
    for token, log_prob, alternatives in zip(ids, chosen, top):
        assert len(alternatives) == 3
        assert alternatives[0] == (token, log_prob)  # greedy: the chosen token is the top one
        assert [v for _, v in alternatives] == sorted((v for _, v in alternatives), reverse=True)
