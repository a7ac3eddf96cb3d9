"""The independent layout check: exported TensorRT-LLM checkpoints of any TP/PP size convert back
to the source Hugging Face tensors, and the CPU engine serving the converted tensors produces the
source model's greedy output."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from tritonllm.engine import trtllm_checkpoint
from tritonllm.engine.trtllm_checkpoint import load_as_hf
from tritonllm.hf_compat import rope_theta_of


def _fp16_rounded_model(model_dir):
    """The source model with its weights rounded through float16, the export's dtype (ModelOpt
    writes float16 even when float32 is asked for), computing in float32."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32).eval()
    return model.half().float()


@pytest.fixture(scope="module")
def tiny(tiny_llama_dir):
    model = _fp16_rounded_model(tiny_llama_dir)
    return model, model.state_dict()


@pytest.mark.parametrize("tp, pp", [(1, 1), (2, 1), (4, 1), (1, 2), (2, 2)])
def test_tiny_llama_round_trip_any_tp_pp(export, tiny_llama_dir, tiny, tp, pp):
    ckpt = export(tiny_llama_dir, f"tiny-{tp}-{pp}", tp=tp, pp=pp)
    assert len(list(ckpt.glob("rank*.safetensors"))) == tp * pp
    hf_config, state = load_as_hf(ckpt)
    _, source = tiny
    assert set(state) == set(source)
    for name, tensor in source.items():
        assert state[name].dtype == torch.float16
        assert torch.equal(state[name].float(), tensor), name
    assert rope_theta_of(hf_config) == 50000.0
    assert (hf_config.num_key_value_heads, hf_config.head_dim) == (4, 16)


def test_shards_are_really_split(export, tiny_llama_dir):
    ckpt = export(tiny_llama_dir, "tiny-split", tp=2, pp=2)
    rank3 = load_file(ckpt / "rank3.safetensors")  # pp stage 1, tp rank 1
    # (8 + 2*4) heads * 16 / tp 2 rows of qkv; local layer numbering restarts at 0 per stage.
    assert rank3["transformer.layers.0.attention.qkv.weight"].shape == (128, 128)
    assert "transformer.layers.2.attention.qkv.weight" not in rank3
    assert "lm_head.weight" in rank3 and "transformer.vocab_embedding.weight" not in rank3


def test_qkv_order_is_per_rank_q_then_k_then_v(export, tiny_llama_dir, tiny):
    ckpt = export(tiny_llama_dir, "tiny-order", tp=2)
    _, source = tiny
    qkv = load_file(ckpt / "rank1.safetensors")["transformer.layers.0.attention.qkv.weight"]
    q, k, v = qkv.float().split([64, 32, 32])  # rank 1 holds heads 4-7 and KV heads 2-3
    assert torch.equal(q, source["model.layers.0.self_attn.q_proj.weight"][64:])
    assert torch.equal(k, source["model.layers.0.self_attn.k_proj.weight"][32:])
    assert torch.equal(v, source["model.layers.0.self_attn.v_proj.weight"][32:])


def test_quantized_checkpoints_refuse_to_convert(tmp_path):
    config = {"quantization": {"quant_algo": "FP8"}, "mapping": {"tp_size": 1, "pp_size": 1}}
    with pytest.raises(ValueError, match="only full-precision checkpoints convert back"):
        trtllm_checkpoint.to_hf_state_dict(config, [{}])


def _greedy_reference(model, prompts, new_tokens, eos=2):
    """transformers' greedy continuation, cut before the first EOS (the engine omits it)."""
    out = []
    for ids in prompts:
        with torch.no_grad():
            generated = model.generate(torch.tensor([ids]), max_new_tokens=new_tokens,
                                       do_sample=False, eos_token_id=eos, pad_token_id=eos)
        tokens = generated[0, len(ids):].tolist()
        out.append(tokens[:tokens.index(eos)] if eos in tokens else tokens)
    return out


def _greedy_engine(hf_config, state, prompts, new_tokens):
    from tritonllm.engine import EngineConfig, GenerationRequest, LLMEngine
    from tritonllm.engine.runner import ModelRunner

    config = EngineConfig(max_batch_size=4, max_num_tokens=128, max_input_len=64,
                          max_seq_len=128, max_tokens_in_paged_kv_cache=1024, num_threads=2)
    engine = LLMEngine(ModelRunner.from_state_dict(hf_config, state, config), config)
    try:
        requests = [GenerationRequest(f"r{i}", ids, new_tokens, exclude_input_in_output=True)
                    for i, ids in enumerate(prompts)]
        outputs = engine.generate(requests, timeout=600)
    finally:
        engine.shutdown()
    return [o[-1].token_ids for o in outputs]


def test_cpu_engine_serves_a_tp2_pp2_export_like_the_source(export, tiny_llama_dir,
                                                            tiny):
    ckpt = export(tiny_llama_dir, "tiny-engine", tp=2, pp=2)
    hf_config, state = load_as_hf(ckpt, eos_token_id=2, bos_token_id=1)
    model, _ = tiny
    prompts = [[1, 17, 300, 42, 7], [1, 5, 6, 7, 8, 9, 10, 11]]
    assert _greedy_engine(hf_config, state, prompts, 12) == _greedy_reference(model, prompts, 12)


def test_cpu_engine_serves_a_smollm2_tp3_export_like_the_source(export, model_dir):
    from transformers import AutoTokenizer

    ckpt = export(model_dir, "smol-engine", tp=3)
    hf_config, state = load_as_hf(ckpt, eos_token_id=2, bos_token_id=1)
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    chat = tokenizer.apply_chat_template([{"role": "user",
                                           "content": "What is the capital of France?"}],
                                         add_generation_prompt=True, tokenize=False)
    prompts = [tokenizer(chat, add_special_tokens=False).input_ids,
               tokenizer("The water cycle moves water").input_ids]
    reference = _greedy_reference(_fp16_rounded_model(model_dir), prompts, 10)
    assert _greedy_engine(hf_config, state, prompts, 10) == reference
    assert "Paris" in tokenizer.decode(reference[0])


def test_cpu_engine_serves_an_int8_weight_only_export_with_int8_weights(export, tiny_llama_dir,
                                                                        tiny):
    """A W8A16 export (mode int8_wo, TP 2) is served with int8 weights per output channel: the
    same numbers as the source model's fp16 weights quantized the way TensorRT-LLM does."""
    from dataclasses import replace

    from transformers import AutoConfig

    from tritonllm.engine import EngineConfig, GenerationRequest, LLMEngine
    from tritonllm.engine.linear import Int8Linear
    from tritonllm.engine.runner import ModelRunner

    ckpt = export(tiny_llama_dir, "tiny-int8wo", tp=2, mode="int8_wo", kv_cache="none")
    assert trtllm_checkpoint.read_config(ckpt)["quantization"]["quant_algo"] == "W8A16"
    config = EngineConfig(max_batch_size=2, max_num_tokens=64, max_input_len=32,
                          max_seq_len=64, max_tokens_in_paged_kv_cache=256, num_threads=2)
    engine = LLMEngine(ckpt, config)  # a checkpoint directory, weights: auto
    served = engine.runner
    assert served.int8 and all(isinstance(linear, Int8Linear) for layer in served.weights.layers
                               for linear in (layer.qkv, layer.o, layer.gate_up, layer.down))
    _, source = tiny
    expected = ModelRunner.from_state_dict(AutoConfig.from_pretrained(str(tiny_llama_dir)),
                                           source, replace(config, weights="int8"))
    assert torch.equal(served.weights.layers[1].gate_up.scale,
                       expected.weights.layers[1].gate_up.scale)
    prompt = [1, 17, 300, 42, 7, 99]
    logits = expected.prompt_logits(prompt)
    assert torch.equal(served.prompt_logits(prompt), logits)
    try:
        [outputs] = engine.generate([GenerationRequest("w8", prompt, 8, end_id=-1)], timeout=300)
    finally:
        engine.shutdown()
    assert outputs[-1].token_ids[len(prompt)] == logits[-1].argmax().item()
    assert len(outputs[-1].token_ids) == len(prompt) + 8


def test_cpu_engine_serves_an_int4_weight_only_export_with_per_channel_int4(export,
                                                                            tiny_llama_dir, tiny):
    """A W4A16 export (mode int4_wo) is served with int4 weights, one scale per output channel
    as TensorRT-LLM quantizes it at build time (lm_head in int8, as the runner keeps it)."""
    from dataclasses import replace

    from transformers import AutoConfig

    from tritonllm.engine import EngineConfig, LLMEngine, cpu_kernels
    from tritonllm.engine.linear import Int4Linear
    from tritonllm.engine.runner import ModelRunner

    if cpu_kernels.load() is None:
        pytest.skip("int4 weights need our CPU kernels")
    ckpt = export(tiny_llama_dir, "tiny-int4wo", tp=1, mode="int4_wo", kv_cache="none")
    assert trtllm_checkpoint.read_config(ckpt)["quantization"]["quant_algo"] == "W4A16"
    config = EngineConfig(max_batch_size=2, max_num_tokens=64, max_input_len=32,
                          max_seq_len=64, max_tokens_in_paged_kv_cache=256, num_threads=2)
    served = LLMEngine(ckpt, config).runner  # weights: auto
    down = served.weights.layers[0].down
    assert served.weight_mode == "int4" and isinstance(down, Int4Linear)
    assert (down.block_scale == 1).all()  # one scale per output channel
    assert (down.scale == down.scale[:, :1]).all()
    _, source = tiny
    expected = ModelRunner(AutoConfig.from_pretrained(str(tiny_llama_dir)), source,
                           replace(config, weights="int4"), int4_per_channel=True)
    prompt = [1, 17, 300, 42, 7, 99]
    assert torch.equal(served.prompt_logits(prompt), expected.prompt_logits(prompt))
