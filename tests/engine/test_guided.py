"""Guided decoding and top log-probabilities in the engine, on the real SmolLM2 checkpoint.

Outputs are checked by parsing them (json, jsonschema, re), batches by comparing an unguided
request's tokens with transformers' greedy tokens, log-probabilities against transformers'
log-softmax of the same checkpoint.
"""

from __future__ import annotations

import json
import re
import threading
import time

import jsonschema
import pytest
import torch
from tests.engine.engine_helpers import hf_greedy

from tritonllm.engine import EngineConfig, GenerationRequest, LLMEngine, SamplingParams
from tritonllm.engine.guided import Guide, Grammars
from tritonllm.engine.request import Sequence
from tritonllm.engine.sampler import Sampler

EOS = 2
CONFIG = EngineConfig(max_batch_size=8, max_num_tokens=128, max_input_len=256, max_seq_len=512,
                      max_tokens_in_paged_kv_cache=4096, num_threads=1)
PERSON = {"type": "object",
          "properties": {"name": {"type": "string", "maxLength": 20},
                         "age": {"type": "integer", "minimum": 0, "maximum": 120},
                         "role": {"enum": ["admin", "user", "guest"]},
                         "tags": {"type": "array", "items": {"type": "string", "maxLength": 10},
                                  "maxItems": 3}},
          "required": ["name", "age", "role"], "additionalProperties": False}


@pytest.fixture(scope="module")
def tokenizer(smollm):
    return smollm[1]


@pytest.fixture(scope="module")
def engine(smollm_dir):
    engine = LLMEngine(smollm_dir, CONFIG, tokenizer=smollm_dir).start()
    yield engine
    engine.shutdown()


def chat(tokenizer, text: str) -> list[int]:
    rendered = tokenizer.apply_chat_template([{"role": "user", "content": text}],
                                             add_generation_prompt=True, tokenize=False)
    return tokenizer(rendered, add_special_tokens=False).input_ids


def request(prompt, guide=None, n=120, **fields) -> GenerationRequest:
    return GenerationRequest(f"g-{time.monotonic_ns()}", prompt, n, end_id=EOS,
                             exclude_input_in_output=True, guide=guide, **fields)


def text_of(engine, tokenizer, req) -> tuple[str, str]:
    final = engine.generate([req], timeout=300)[0][-1]
    assert final.error is None, final.error
    return tokenizer.decode(final.token_ids), final.finish_reason


@pytest.mark.parametrize("sampling", [SamplingParams(),
                                      SamplingParams(temperature=1.0, top_p=1.0, seed=7)])
def test_json_schema_output_validates(engine, tokenizer, sampling):
    prompt = chat(tokenizer, "Describe a user of a web site as JSON.")
    text, reason = text_of(engine, tokenizer, request(
        prompt, Guide("json_schema", json.dumps(PERSON)), n=200, sampling=sampling))
    assert reason == "end_id", text  # the grammar completed, then the end token
    jsonschema.validate(json.loads(text), PERSON)


def test_json_regex_and_grammar_guides(engine, tokenizer):
    prompt = chat(tokenizer, "Give me some data.")
    text, _ = text_of(engine, tokenizer, request(prompt, Guide("json"), n=100))
    json.loads(text)
    text, _ = text_of(engine, tokenizer, request(prompt, Guide("regex", r"[0-9]{3}-[a-z]{2,4}")))
    assert re.fullmatch(r"[0-9]{3}-[a-z]{2,4}", text), text
    grammar = 'root ::= "yes" | "no" | "maybe"'
    text, reason = text_of(engine, tokenizer, request(prompt, Guide("ebnf_grammar", grammar)))
    assert text in ("yes", "no", "maybe") and reason == "end_id"


def test_unguided_request_in_a_guided_batch_keeps_its_tokens(engine, tokenizer, smollm):
    prompts = [chat(tokenizer, f"Tell me about the number {i}.") for i in range(4)]
    reference = hf_greedy(smollm[0], prompts[0], 24, eos=EOS)
    guided = [request(p, Guide("json_schema", json.dumps(PERSON)), n=60) for p in prompts[1:]]
    before = engine.stats().steps_with_multiple_decodes
    outputs = engine.generate([request(prompts[0], n=24)] + guided, timeout=300)
    assert outputs[0][-1].token_ids == reference
    for out in outputs[1:]:
        assert out[-1].finish_reason == "end_id"
        jsonschema.validate(json.loads(tokenizer.decode(out[-1].token_ids)), PERSON)
    assert engine.stats().steps_with_multiple_decodes > before


def test_a_guide_that_does_not_compile_is_refused_and_the_engine_serves_on(engine, tokenizer):
    prompt = chat(tokenizer, "Hi")
    bad = [Guide("json_schema", "{not json"), Guide("regex", "(ab"),
           Guide("ebnf_grammar", "root ::= undefined_rule")]
    for guide in bad:
        with pytest.raises(ValueError, match=r"^guided_decoding_guide: the \w+ guide does not "
                                             r"compile: .+"):
            engine.submit(request(prompt, guide), lambda output: None)
    with pytest.raises(ValueError, match="guided_decoding_guide_type: must be one of"):
        Guide("xml", "<a/>")
    with pytest.raises(ValueError, match="guided_decoding_guide: required"):
        Guide("regex", "")
    text, _ = text_of(engine, tokenizer, request(prompt, Guide("regex", "[a-z]{1,8}")))
    assert re.fullmatch("[a-z]{1,8}", text)


def test_a_repeated_guide_compiles_once(engine, tokenizer):
    schema = json.dumps({"type": "object", "properties": {"n": {"type": "integer"}},
                         "required": ["n"]})
    prompt = chat(tokenizer, "A number as JSON")
    before = engine.guided.grammars.compiles
    for _ in range(3):
        text, _ = text_of(engine, tokenizer, request(prompt, Guide("json_schema", schema)))
        assert isinstance(json.loads(text)["n"], int)
    assert engine.guided.grammars.compiles == before + 1


def test_cancel_frees_a_guided_request(engine, tokenizer):
    outputs, done = [], threading.Event()

    def on_output(output):
        outputs.append(output)
        if output.finished:
            done.set()

    req = request(chat(tokenizer, "JSON please"), Guide("json"), n=400, streaming=True)
    engine.submit(req, on_output)
    while not outputs:
        time.sleep(0.01)
    assert engine.cancel(req.request_id)
    assert done.wait(60)
    assert outputs[-1].finish_reason == "cancelled"
    assert engine.stats().running == 0
    text, _ = text_of(engine, tokenizer, request(chat(tokenizer, "JSON please"),
                                                 Guide("json_schema", json.dumps(PERSON))))
    jsonschema.validate(json.loads(text), PERSON)


def test_guided_requests_survive_preemption(smollm_dir, tokenizer):
    # 4 guided requests of up to ~100 tokens in a 160-token cache: some must be preempted
    config = EngineConfig(batch_scheduler_policy="max_utilization", max_batch_size=4,
                          max_num_tokens=128, max_input_len=64,
                          max_seq_len=160, max_tokens_in_paged_kv_cache=160, num_threads=1)
    engine = LLMEngine(smollm_dir, config, tokenizer=tokenizer).start()
    try:
        prompt = chat(tokenizer, "User JSON")
        guide = Guide("json_schema", json.dumps(PERSON))
        outputs = engine.generate([request(prompt, guide, n=80) for _ in range(4)], timeout=300)
        assert engine.stats().preempted > 0
        for out in outputs:
            final = out[-1]
            assert final.finish_reason == "end_id", final
            jsonschema.validate(json.loads(tokenizer.decode(final.token_ids)), PERSON)
    finally:
        engine.shutdown()


def test_guided_requests_are_refused_without_a_tokenizer(smollm_dir, tokenizer):
    engine = LLMEngine(smollm_dir, CONFIG)
    try:
        with pytest.raises(ValueError, match="guided_decoding_guide_type: guided decoding is "
                                             "not available: this engine was started without"):
            engine.submit(request(chat(tokenizer, "x"), Guide("json")), lambda output: None)
    finally:
        engine.shutdown()


def test_top_log_probs_equal_transformers_log_softmax(engine, tokenizer, smollm):
    model = smollm[0]
    prompt = chat(tokenizer, "What is the capital of France?")
    final = engine.generate([request(prompt, n=12, return_log_probs=True,
                                     num_top_log_probs=5)], timeout=300)[0][-1]
    ids = prompt + final.token_ids
    with torch.inference_mode():
        logits = model(torch.tensor([ids])).logits[0].float()
    expected = torch.log_softmax(logits, -1)[len(prompt) - 1:len(ids) - 1]
    assert len(final.top_log_probs) == len(final.token_ids)
    for step, (token, chosen, top) in enumerate(zip(final.token_ids, final.log_probs,
                                                    final.top_log_probs)):
        values, top_ids = expected[step].topk(5)
        assert [t for t, _ in top] == top_ids.tolist()
        assert [v for _, v in top] == pytest.approx(values.tolist(), abs=1e-4)
        assert top[0] == (token, pytest.approx(chosen, abs=1e-5))


def test_sampled_top_log_probs_hold_the_chosen_token(engine, tokenizer):
    final = engine.generate([request(chat(tokenizer, "Say something"), n=10,
                                     sampling=SamplingParams(temperature=0.7, top_k=3, seed=3),
                                     return_log_probs=True, num_top_log_probs=3)],
                            timeout=300)[0][-1]
    for token, chosen, top in zip(final.token_ids, final.log_probs, final.top_log_probs):
        assert dict(top)[token] == pytest.approx(chosen)
        assert sum(torch.tensor([v for _, v in top]).exp().tolist()) == pytest.approx(1, abs=1e-4)


def test_the_grammar_wins_over_min_tokens(smollm_dir, tokenizer):
    """A complete grammar allows only the end token; min_tokens must not leave no token."""
    grammars = Grammars(tokenizer, 49152, [EOS])
    req = GenerationRequest("m", [1, 2, 3], 10, guide=Guide("regex", "a"), end_id=EOS,
                            sampling=SamplingParams(min_tokens=5))
    seq = Sequence(0, req, 0)
    seq.matcher = grammars.matcher(req.guide)
    token_a = tokenizer("a", add_special_tokens=False).input_ids[0]
    assert seq.matcher.accept(token_a)
    seq.append_token(token_a, 0.0, 0)
    choice = Sampler(grammars).sample(torch.randn(1, 49152), [seq], [[EOS]])[0]
    assert choice.token == EOS


def test_masks_along_drafts_equal_step_by_step_masks_and_leave_the_matcher(smollm_dir,
                                                                          tokenizer):
    grammars = Grammars(smollm_dir, 49152, [EOS])
    guide = Guide("regex", "(ab|cd)+!")
    ids = {text: tokenizer(text, add_special_tokens=False).input_ids for text in ("ab", "cd", "x")}
    drafts = ids["ab"] + ids["cd"] + ids["x"] + ids["ab"]  # the grammar refuses "x"
    matcher = grammars.matcher(guide)
    along = grammars.allowed_along(matcher, drafts)
    stepwise, fresh = [], grammars.matcher(guide)
    for draft in drafts[:3]:
        stepwise.append(grammars.allowed([fresh])[0])
        assert fresh.accept(draft) == (draft != ids["x"][0])
    assert len(along) == len(drafts) + 1
    assert all(torch.equal(a, b) for a, b in zip(along, stepwise))
    assert torch.equal(along[3], along[2]) and torch.equal(along[4], along[2])  # unreachable
    assert torch.equal(grammars.allowed([matcher])[0], along[0])  # rolled back to the start


@pytest.mark.parametrize("guide, text, sampling", [
    (Guide("regex", "(one two three four five, ){4}"), "Count to five, four times.",
     SamplingParams()),
    (Guide("json_schema", json.dumps(PERSON)),
     'Copy this record exactly: {"name": "Ada", "age": 36, "role": "admin", "tags": '
     '["math", "code"]}', SamplingParams()),
    (Guide("regex", "(one two three four five, ){4}"), "Count to five, four times.",
     SamplingParams(temperature=0.8, top_k=20, seed=4)),
])
def test_guided_requests_speculate_with_unchanged_output(engine, smollm_dir, tokenizer, guide,
                                                         text, sampling):
    import dataclasses

    spec = LLMEngine(smollm_dir, dataclasses.replace(CONFIG, speculative_decoding_mode="ngram"),
                     tokenizer=smollm_dir).start()
    try:
        expected = engine.generate([request(chat(tokenizer, text), guide, 60,
                                            sampling=sampling)], timeout=300)[0][-1]
        got = spec.generate([request(chat(tokenizer, text), guide, 60, sampling=sampling)],
                            timeout=300)[0][-1]
        stats = spec.stats()
    finally:
        spec.shutdown()
    assert got.error is None and got.token_ids == expected.token_ids
    assert got.finish_reason == expected.finish_reason
    assert stats.spec_accepted_tokens > 0
