"""tensorrtllm_backend's client scripts, as they talk on the wire, against real tritonservers
(decoupled and not) serving SmolLM2 on the CPU engine. Each test follows one script's requests
and reads the answers the way that script reads them (see docs/compatibility.md):

- end_to_end_grpc_client.py: the ``ensemble`` over a gRPC stream, ``text_output[0].decode()``;
- inflight_batcher_llm_client.py: token ids to ``tensorrt_llm``, unary or streamed, with
  ``runtime_top_k=1, runtime_top_p=0.0``, reading ``output_ids[0][0]``;
- tools/inflight_batcher_llm/end_to_end_test.py: preprocessing, tensorrt_llm and
  postprocessing called one by one over unary HTTP/gRPC, compared with the ensemble.

Greedy answers are compared with transformers' ``generate`` token for token.
"""

from __future__ import annotations

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from tests.compat import wire
from tests.helpers import hf_greedy

PROMPT = "The only thing we have to fear is"
PERF_NAMES = ("kv_cache_alloc_new_blocks", "kv_cache_reused_blocks",
              "kv_cache_alloc_total_blocks", "arrival_time_ns", "first_scheduled_time_ns",
              "first_token_time_ns", "last_token_time_ns", "acceptance_rate",
              "total_accepted_draft_tokens", "total_draft_tokens")


def e2e_values(prompt: str, max_tokens: int, stream: bool, **extra) -> dict:
    """end_to_end_grpc_client.py's inputs: these five always, the rest when asked."""
    return {"text_input": wire.text(prompt), "max_tokens": wire.i32(max_tokens),
            "stream": wire.flag(stream), "beam_width": wire.i32(1),
            "temperature": wire.f32(1.0), "exclude_input_in_output": wire.flag(False), **extra}


def e2e_text(results, stream: bool) -> str:
    """Read as that script reads: ``output[0].decode()``, appended when streaming."""
    texts = [r.as_numpy("text_output")[0].decode("utf-8") for r in results]
    return "".join(texts) if stream else texts[-1]


@pytest.mark.parametrize("stream", [False, True])
def test_end_to_end_grpc_client(triton_server, codec, hf_model, stream):
    expected = codec.decode(hf_greedy(hf_model, codec.encode(PROMPT), 12))
    results = wire.stream(triton_server, "ensemble", e2e_values(PROMPT, 12, stream),
                          ["text_output"])
    assert all(r.as_numpy("text_output").shape == (1,) for r in results)
    # exclude_input_in_output=False: a non-streamed answer holds the prompt, a stream never does.
    assert e2e_text(results, stream) == (expected if stream else PROMPT + expected)


def test_end_to_end_grpc_client_stop_and_bad_words(triton_server, codec, hf_model):
    expected = codec.decode(hf_greedy(hf_model, codec.encode(PROMPT), 12))
    first_word = expected.split()[0]
    stopped = wire.stream(triton_server, "ensemble", e2e_values(
        PROMPT, 12, True, stop_words=wire.words([" " + first_word, "zzz"])), ["text_output"])
    assert e2e_text(stopped, True) == " " + first_word  # the stop word is kept, as TRT-LLM does
    banned = wire.stream(triton_server, "ensemble", e2e_values(
        PROMPT, 12, False, bad_words=wire.words([" " + first_word])), ["text_output"])
    assert not e2e_text(banned, False)[len(PROMPT):].startswith(" " + first_word + " ")


def test_end_to_end_grpc_client_log_probs_and_perf_metrics(triton_server):
    names = ["text_output", "cum_log_probs", "output_log_probs", *PERF_NAMES]
    results = wire.stream(triton_server, "ensemble", e2e_values(
        PROMPT, 6, True, return_log_probs=wire.flag(True),
        return_perf_metrics=wire.flag(True)), names)
    log_probs = np.concatenate([r.as_numpy("output_log_probs")[0][0] for r in results])
    assert len(log_probs) == 6 and (log_probs <= 0).all()
    assert results[-1].as_numpy("cum_log_probs")[0][0] == pytest.approx(log_probs.sum(), abs=1e-3)
    for result in results:  # the script reads every perf metric of every response as [0][0]
        perf = {name: result.as_numpy(name)[0][0] for name in PERF_NAMES}
        assert perf["arrival_time_ns"] <= perf["first_scheduled_time_ns"] \
            <= perf["first_token_time_ns"] <= perf["last_token_time_ns"]
        assert perf["kv_cache_alloc_total_blocks"] >= 1 and perf["kv_cache_reused_blocks"] == 0


def test_log_probs_absent_unless_asked(triton_server):
    result = wire.stream(triton_server, "ensemble", e2e_values(PROMPT, 4, False))[-1]
    assert result.as_numpy("cum_log_probs") is None  # absent, as the backend leaves it
    assert result.as_numpy("text_output").shape == (1,)


# --- inflight_batcher_llm_client.py: token ids straight to tensorrt_llm ----------------------

def ifb_values(codec, prompt: str, output_len: int, streaming: bool) -> dict:
    token_ids = codec.encode(prompt)
    return {"input_ids": wire.ids(token_ids), "input_lengths": wire.i32(len(token_ids)),
            "request_output_len": wire.i32(output_len), "beam_width": wire.i32(1),
            "temperature": wire.f32(1.0), "streaming": wire.flag(streaming),
            "end_id": wire.i32(codec.end_id), "pad_id": wire.i32(codec.pad_id),
            "runtime_top_k": wire.i32(1), "runtime_top_p": wire.f32(0.0)}


def test_inflight_batcher_llm_client_unary(unary_server, codec, hf_model):
    prompt_ids = codec.encode(PROMPT)
    result = wire.grpc_client(unary_server).infer(
        "tensorrt_llm", wire.inputs(grpcclient, ifb_values(codec, PROMPT, 12, False)))
    seq_len = result.as_numpy("sequence_length")[0][0]
    tokens = result.as_numpy("output_ids")[0][0][:seq_len].tolist()
    # Without --exclude-input-in-output the script strips the prompt itself.
    assert tokens[:len(prompt_ids)] == prompt_ids
    assert tokens[len(prompt_ids):] == hf_greedy(hf_model, prompt_ids, 12)


def test_inflight_batcher_llm_client_streaming(triton_server, codec, hf_model):
    results = wire.stream(triton_server, "tensorrt_llm", ifb_values(codec, PROMPT, 12, True))
    tokens = []
    for result in results:  # deltas without the prompt; a response may carry none
        if result.as_numpy("sequence_length")[0][0] > 0:
            tokens.extend(result.as_numpy("output_ids")[0][0].tolist())
    assert tokens == hf_greedy(hf_model, codec.encode(PROMPT), 12)


def test_streaming_on_a_unary_deployment_is_refused(unary_server, codec):
    with pytest.raises(InferenceServerException, match="streaming: .*decoupled mode"):
        wire.grpc_client(unary_server).infer(
            "tensorrt_llm", wire.inputs(grpcclient, ifb_values(codec, PROMPT, 4, True)))
    with pytest.raises(InferenceServerException, match="streaming: .*decoupled mode"):
        wire.infer(unary_server, "http", "ensemble", e2e_values(PROMPT, 4, True))
    assert wire.infer(unary_server, "http", "ensemble", e2e_values(PROMPT, 2, False))


def test_unary_infer_on_a_decoupled_deployment_is_refused_by_triton(triton_server):
    # The documented choice: decoupled (streaming) deployments serve gRPC streams and
    # generate/generate_stream; unary clients need --no-decoupled.
    with pytest.raises(InferenceServerException, match="decoupled"):
        wire.infer(triton_server, "grpc", "ensemble", e2e_values(PROMPT, 2, False))


# --- tools/inflight_batcher_llm/end_to_end_test.py: the models one by one -------------------

@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_end_to_end_test_models_one_by_one_equal_the_ensemble(unary_server, protocol):
    flags = {"return_log_probs": wire.flag(True)}
    pre = wire.infer(unary_server, protocol, "preprocessing", {
        "QUERY": wire.text(PROMPT), "BAD_WORDS_DICT": wire.words([""]),
        "STOP_WORDS_DICT": wire.words([""]), "REQUEST_OUTPUT_LEN": wire.i32(10)})
    engine = wire.infer(unary_server, protocol, "tensorrt_llm", {
        "input_ids": pre.as_numpy("INPUT_ID"), "decoder_input_ids": pre.as_numpy("DECODER_INPUT_ID"),
        "input_lengths": pre.as_numpy("REQUEST_INPUT_LEN"),
        "request_output_len": pre.as_numpy("REQUEST_OUTPUT_LEN"),
        "end_id": pre.as_numpy("OUT_END_ID"), "pad_id": pre.as_numpy("OUT_PAD_ID"), **flags})
    post = wire.infer(unary_server, protocol, "postprocessing", {
        "TOKENS_BATCH": engine.as_numpy("output_ids"),
        "SEQUENCE_LENGTH": engine.as_numpy("sequence_length")})
    ensemble = wire.infer(unary_server, protocol, "ensemble", {
        "text_input": wire.text(PROMPT), "max_tokens": wire.i32(10),
        "bad_words": wire.words([""]), "stop_words": wire.words([""]), **flags},
        ["text_output", "cum_log_probs", "output_log_probs"])
    assert post.as_numpy("OUTPUT").tolist() == ensemble.as_numpy("text_output").tolist()
    assert post.as_numpy("OUTPUT")[0].decode().startswith(PROMPT)
    # The ensemble's request may reuse the first one's cached prompt blocks: equal up to rounding.
    for name in ("cum_log_probs", "output_log_probs"):
        assert np.allclose(engine.as_numpy(name), ensemble.as_numpy(name), atol=1e-4), name
