"""Planner numbers against hand-computed values, and every rule's rejection message."""

from __future__ import annotations

from pathlib import Path

import pytest

from tritonllm.build.planning import architectures
from tritonllm.build.planning.planner import GIB, format_plan, plan
from tritonllm.build.profile import from_dict, load_profile
from tritonllm.build.source import model_arch

PROFILES = Path(__file__).resolve().parents[2] / "build"
RESERVE = int(1.5 * GIB)


def _plan(name: str):
    profile = load_profile(PROFILES / f"{name}.yaml")
    return plan(profile, model_arch(profile))


def _kv_tokens(free: int, fraction: float, kv_per_token: int, block: int = 32) -> int:
    return int(free * fraction) // (kv_per_token * block) * block


# Per-layer GEMM weights: hidden*(q + 2*kv) + q*hidden + 3*hidden*intermediate.
LLAMA8B_GEMM = 4096 * (4096 + 2 * 1024) + 4096 * 4096 + 3 * 4096 * 14336  # 218,103,808
LLAMA70B_GEMM = 8192 * (8192 + 2 * 1024) + 8192 * 8192 + 3 * 8192 * 28672  # 855,638,016
LLAMA1B_GEMM = 2048 * (2048 + 2 * 512) + 2048 * 2048 + 3 * 2048 * 8192  # 60,817,408
SMOL_GEMM = 576 * (576 + 2 * 192) + 576 * 576 + 3 * 576 * 1536  # 3,538,944


def test_llama_8b_fp8_h100():
    p = _plan("llama-3.1-8b-fp8-h100")
    # FP8: 1 byte per GEMM weight; norms (2 x 4096 per layer) and embedding + lm_head in bf16.
    weights = 32 * (LLAMA8B_GEMM * 1 + 2 * 4096 * 2) + 2 * 128256 * 4096 * 2 + 4096 * 2
    assert p.weight_bytes_per_gpu == weights == 9_081_200_640
    assert p.kv_bytes_per_token == 2 * 32 * 8 * 128 * 1 == 65_536
    activations = 8192 * (3 * 4096 + 4096 + 2 * 1024 + 2 * 14336) * 2 + 64 * 128256 * 4
    assert p.activation_bytes == activations == 804_585_472
    free = 80 * GIB - weights - activations - RESERVE
    assert p.free_bytes == free
    assert p.kv_tokens == _kv_tokens(free, 0.9, 65_536) == 1_021_760
    assert p.max_full_sequences == 1_021_760 // 8192 == 124
    assert p.verdict == "OK"


def test_llama_70b_fp8_tp4_h100():
    p = _plan("llama-3.1-70b-fp8-tp4-h100")
    weights = (80 * (LLAMA70B_GEMM // 4 + 2 * 8192 * 2)
               + 2 * (128256 // 4) * 8192 * 2 + 8192 * 2)
    assert p.weight_bytes_per_gpu == weights
    assert p.kv_bytes_per_token == 2 * 80 * (8 // 4) * 128 * 1 == 40_960
    activations = 8192 * (3 * 8192 + (8192 + 2 * 1024) // 4 + 2 * 28672 // 4) * 2 \
        + 64 * 128256 * 4
    assert p.activation_bytes == activations
    free = 80 * GIB - weights - activations - RESERVE
    assert p.kv_tokens == _kv_tokens(free, 0.9, 40_960)
    assert p.max_full_sequences == p.kv_tokens // 16384 == 87
    assert p.ok


def test_llama_70b_int4awq_tp2_h100():
    p = _plan("llama-3.1-70b-int4awq-tp2-h100")
    bits = 4 + 16 / 128  # int4 + one 16-bit scale per group of 128
    weights = int(80 * (LLAMA70B_GEMM * bits / 8 / 2 + 2 * 8192 * 2)
                  + 2 * (128256 // 2) * 8192 * 2 + 8192 * 2)
    assert p.weight_bytes_per_gpu == weights
    assert p.kv_bytes_per_token == 2 * 80 * (8 // 2) * 128 * 1 == 81_920
    free = 80 * GIB - weights - p.activation_bytes - RESERVE
    assert p.kv_tokens == _kv_tokens(free, 0.9, 81_920) == 698_144
    assert p.ok


def test_llama_1b_int8wo_l4():
    p = _plan("llama-3.2-1b-int8wo-l4")
    weights = 16 * (LLAMA1B_GEMM * 1 + 2 * 2048 * 2) + 2 * 128256 * 2048 * 2 + 2048 * 2
    assert p.weight_bytes_per_gpu == weights == 2_023_886_848
    assert p.kv_bytes_per_token == 2 * 16 * 8 * 64 * 1 == 16_384  # int8 KV
    activations = 8192 * (3 * 2048 + 2048 + 2 * 512 + 2 * 8192) * 2 + 64 * 128256 * 4
    assert p.activation_bytes == activations
    free = 24 * GIB - weights - activations - RESERVE
    assert p.kv_tokens == _kv_tokens(free, 0.9, 16_384) == 1_191_072
    assert p.ok


def test_smollm2_cpu():
    p = _plan("smollm2-cpu")
    # The CPU twin holds float32 whatever the checkpoint dtype.
    weights = 30 * (SMOL_GEMM * 4 + 2 * 576 * 4) + 2 * 49152 * 576 * 4 + 576 * 4
    assert p.weight_bytes_per_gpu == weights == 651_306_240
    assert p.kv_bytes_per_token == 2 * 30 * 3 * 64 * 4 == 46_080
    activations = 512 * (3 * 576 + 576 + 2 * 192 + 2 * 1536) * 4 + 8 * 49152 * 4
    free = 16 * GIB - weights - activations - RESERVE
    assert p.kv_tokens == _kv_tokens(free, 0.15, 46_080, block=16) == 48_512
    assert p.ok


def test_weight_sizes_agree_with_published_sizes():
    # Llama-3.1-8B in bf16 is ~16 GB (8.03 B parameters); 70B in FP8 is ~70 GB.
    bf16 = from_dict({"name": "x", "model": {"dir": "/absent", "architecture": "llama-3.1-8b"}})
    assert plan(bf16, model_arch(bf16)).weight_bytes_total / 1e9 == pytest.approx(16.06, abs=0.05)
    fp8 = _plan("llama-3.1-70b-fp8-tp4-h100")
    assert fp8.weight_bytes_total / 1e9 == pytest.approx(70, rel=0.05)
    assert architectures.get_known("llama-3.1-8b").num_params == pytest.approx(8.03e9, rel=0.002)
    assert architectures.get_known("llama-3.1-70b").num_params == pytest.approx(70.6e9, rel=0.002)


def test_more_tensor_parallelism_splits_weights_and_kv():
    def smol(tp):
        profile = from_dict({"name": "x", "dtype": "float16", "target": {"gpu": "L4"},
                             "parallel": {"tp_size": tp}})
        return plan(profile, architectures.get_known("smollm2-135m"))

    one, three = smol(1), smol(3)
    assert three.kv_bytes_per_token * 3 == one.kv_bytes_per_token
    assert three.weight_bytes_per_gpu < one.weight_bytes_per_gpu / 2
    assert three.weight_bytes_total == one.weight_bytes_total


# ---- rules: each rejected with a message that names the fix ----------------------------------

def _problems(arch: str, **sections) -> list[str]:
    data = {"name": "rule", "model": {"dir": "/absent", "architecture": arch},
            "dtype": "bfloat16", "target": {"gpu": "H100"}}
    for key, value in sections.items():
        data[key] = {**data.get(key, {}), **value} if isinstance(value, dict) else value
    profile = from_dict(data)
    return list(plan(profile, model_arch(profile)).problems)


def _only(problems: list[str], *fragments: str) -> None:
    assert len(problems) == 1, problems
    for fragment in fragments:
        assert fragment in problems[0], problems[0]


def test_rule_heads_not_divisible_by_tp():
    problems = _problems("smollm2-135m", parallel={"tp_size": 2})
    assert len(problems) == 2
    assert "num_attention_heads=9 is not divisible by tp_size=2" in problems[0]
    assert "num_key_value_heads=3 is not divisible by tp_size=2" in problems[1]
    assert "[1, 3]" in problems[0]


def test_rule_kv_heads_not_divisible_by_tp():
    _only(_problems("llama-3.1-8b", parallel={"tp_size": 16}),
          "num_key_value_heads=8 is not divisible by tp_size=16", "[1, 2, 4, 8]")


def test_rule_layers_not_divisible_by_pp():
    _only(_problems("smollm2-135m", parallel={"pp_size": 4}),
          "num_hidden_layers=30 is not divisible by pp_size=4", "[1, 2, 3, 5, 6, 10, 15, 30]")


def test_rule_awq_group_must_divide_per_shard_sizes():
    # Measured: ModelOpt's INT4 AWQ with block 128 fails on SmolLM2's hidden size 576.
    _only(_problems("smollm2-135m", quantization={"mode": "int4_awq", "group_size": 128}),
          "group_size: 128 does not divide", "hidden_size (qkv, gate, up) = 576",
          "set quantization.group_size: 64")
    assert not _problems("smollm2-135m", quantization={"mode": "int4_awq", "group_size": 64})


def test_rule_awq_group_per_shard_with_tp():
    # intermediate 8192 / tp 4 = 2048 fits 128; hidden and o_proj shards too: no problem ...
    assert not _problems("llama-3.2-1b", quantization={"mode": "int4_awq"},
                         parallel={"tp_size": 4})
    # ... but SmolLM2's o_proj shard at tp=3 is 576/3 = 192: 128 does not divide it.
    problems = _problems("smollm2-135m", quantization={"mode": "int4_awq", "group_size": 128},
                         parallel={"tp_size": 3})
    _only(problems, "attention output / tp (o_proj), tp=3 = 192", "group_size: 64")


def test_rule_fp8_needs_ada_or_hopper():
    _only(_problems("llama-3.1-8b", quantization={"mode": "fp8"}, target={"gpu": "A100-80GB"}),
          "mode fp8 need FP8", "A100-80GB is Ampere sm80", "int8_sq")
    _only(_problems("llama-3.1-8b", quantization={"kv_cache": "fp8"}, target={"gpu": "A10G"},
                    serving=NO_PAGED_CONTEXT), "kv_cache fp8 need FP8", "A10G is Ampere sm86")
    assert not _problems("llama-3.1-8b", quantization={"mode": "fp8"}, target={"gpu": "L40S"})


NO_PAGED_CONTEXT = {"enable_kv_cache_reuse": False, "enable_chunked_context": False}


@pytest.mark.parametrize("quantization, blocker", [
    ({"mode": "int8_wo", "kv_cache": "int8"}, "disables for an INT8 KV cache"),
    ({"mode": "int4_awq", "group_size": 128, "kv_cache": "fp8"},
     "an FP8 KV cache with quant_algo W4A16_AWQ"),
    ({"mode": "none", "kv_cache": "fp8"}, "an FP8 KV cache with quant_algo None"),
])
def test_rule_kv_cache_reuse_needs_paged_context_fmha(quantization, blocker):
    # trtllm-build 1.1.0 turns paged context FMHA off for these KV caches (with a warning);
    # the executor would then drop reuse silently and refuse chunked context.
    _only(_problems("llama-3.1-8b", quantization=quantization),
          "serving.enable_kv_cache_reuse and serving.enable_chunked_context: need paged context "
          "FMHA", blocker, "quantization.kv_cache: none")
    _only(_problems("llama-3.1-8b", quantization=quantization,
                    serving={"enable_chunked_context": False}),
          "serving.enable_kv_cache_reuse: need", "serving.enable_kv_cache_reuse: false")
    assert not _problems("llama-3.1-8b", quantization=quantization, serving=NO_PAGED_CONTEXT)
    assert not _problems("llama-3.1-8b", quantization={**quantization, "kv_cache": "none"})
    assert not _problems("llama-3.1-8b", quantization={"mode": "fp8", "kv_cache": "fp8"})


def test_rule_w4a8_needs_fp8_too():
    _only(_problems("llama-3.1-8b", quantization={"mode": "w4a8_awq"},
                    target={"gpu": "A100-80GB"}), "mode w4a8_awq need FP8")


def test_rule_nvfp4_needs_blackwell():
    _only(_problems("llama-3.1-8b", quantization={"mode": "nvfp4"}),
          "nvfp4 needs Blackwell (sm100", "H100 is Hopper sm90")
    assert not _problems("llama-3.1-8b", quantization={"mode": "nvfp4"}, target={"gpu": "B200"})


def test_rule_max_seq_len_beyond_positions():
    _only(_problems("smollm2-135m", limits={"max_seq_len": 16384}),
          "limits.max_seq_len: 16384 exceeds the model's max_position_embeddings (8192)")


def test_rule_weights_do_not_fit():
    problems = _problems("llama-3.1-70b")  # bf16 on one H100
    _only(problems, "memory: weights need 131.", "more than H100's 80.0 GiB",
          "raise parallel.tp_size")


def test_rule_kv_cache_cannot_hold_one_sequence():
    problems = _problems("llama-3.1-8b", target={"gpu": "L4"},
                         limits={"max_seq_len": 65536, "max_input_len": 4096})
    _only(problems, "fewer than one sequence of max_seq_len=65536", "kv_cache: fp8/int8")


def test_rule_prompt_longer_than_a_step_without_chunked_context():
    _only(_problems("llama-3.1-8b", serving={"enable_chunked_context": False},
                    limits={"max_num_tokens": 1024, "max_input_len": 2048}),
          "max_num_tokens: 1024 < max_input_len (2048) without chunked context")


def test_rule_cpu_target_is_full_precision_single_process():
    _only(_problems("smollm2-135m", target={"gpu": "cpu"},
                    quantization={"mode": "int8_sq"}), "cpu target serves full precision")
    _only(_problems("smollm2-135m", target={"gpu": "cpu"},
                    parallel={"tp_size": 3}), "cpu target runs one process")


def test_cpu_target_weight_only_modes_serve_the_engines_int8_and_int4_weights():
    from tritonllm.build.repo_values import cpu_engine_parameters

    for mode, weights in (("int8_wo", "int8"), ("int4_wo", "int4")):
        assert _problems("smollm2-135m", target={"gpu": "cpu"}, quantization={"mode": mode}) == []
        profile = from_dict({"name": "c", "model": {"dir": "/absent",
                                                    "architecture": "smollm2-135m"},
                             "target": {"gpu": "cpu"}, "quantization": {"mode": mode}})
        assert cpu_engine_parameters(profile, 4096, Path("/m"))["weights"] == weights
    plain = from_dict({"name": "c", "model": {"dir": "/absent", "architecture": "smollm2-135m"},
                       "target": {"gpu": "cpu"}})
    assert cpu_engine_parameters(plain, 4096, Path("/m"))["weights"] == "auto"


def test_rule_each_target_runs_its_own_speculative_modes():
    _only(_problems("smollm2-135m", target={"gpu": "cpu"}, speculative={"mode": "lookahead"}),
          "speculative.mode: lookahead is TensorRT-LLM's GPU engine mode")
    _only(_problems("llama-3.1-8b", speculative={"mode": "ngram"}),
          "speculative.mode: ngram runs in the CPU engine", "has no n-gram decoding mode",
          "use lookahead")
    _only(_problems("llama-3.1-8b", speculative={"mode": "draft_target",
                                                   "speculative_model_dir": "/draft"}),
          "tensorrt_llm_bls", "refuses streaming")
    assert _problems("llama-3.1-8b", speculative={"mode": "lookahead"}) == []
    assert _problems("smollm2-135m", target={"gpu": "cpu"}, speculative={"mode": "ngram"}) == []


def test_lookahead_activations_are_sized_for_the_raised_token_budget():
    def activations(**speculative):
        profile = from_dict({"name": "a", "model": {"dir": "/absent",
                                                    "architecture": "llama-3.1-8b"},
                             "limits": {"max_batch_size": 256, "max_num_tokens": 2048},
                             "speculative": speculative})
        return plan(profile, model_arch(profile)).activation_bytes

    # trtllm-build raises max_num_tokens to 256 * (15 + 1) = 4096 for 15 draft tokens.
    off, on = activations(), activations(mode="lookahead")
    assert on > off
    with_4096 = from_dict({"name": "a", "model": {"dir": "/absent",
                                                  "architecture": "llama-3.1-8b"},
                           "limits": {"max_batch_size": 256, "max_num_tokens": 4096}})
    assert on == plan(with_4096, model_arch(with_4096)).activation_bytes


def test_cpu_target_renders_the_speculative_section_for_the_cpu_engine():
    from tritonllm.build.repo_values import cpu_engine_parameters

    def params(**speculative):
        profile = from_dict({"name": "c", "model": {"dir": "/absent",
                                                    "architecture": "smollm2-135m"},
                             "target": {"gpu": "cpu"}, "speculative": speculative})
        return cpu_engine_parameters(profile, 4096, Path("/m"))

    assert params()["speculative_decoding_mode"] == "off"
    ngram = params(mode="ngram", max_draft_len=3, max_matching_ngram_size=2)
    assert (ngram["speculative_decoding_mode"], ngram["max_draft_len"],
            ngram["max_matching_ngram_size"]) == ("ngram", "3", "2")
    draft = params(mode="draft_target", speculative_model_dir="/students/s1")
    assert (draft["speculative_decoding_mode"], draft["speculative_model_dir"]) == (
        "draft_target", "/students/s1")
    with pytest.raises(ValueError, match="speculative.speculative_model_dir"):
        params(mode="draft_target")


def test_warning_when_kv_holds_fewer_sequences_than_the_batch():
    p = plan(from_dict({"name": "w", "model": {"dir": "/absent", "architecture": "llama-3.1-8b"},
                        "limits": {"max_batch_size": 256, "max_num_tokens": 8192}}),
             architectures.get_known("llama-3.1-8b"))
    assert p.ok and p.verdict == "OK (with warnings)"
    assert "fewer than max_batch_size=256" in p.warnings[0]


def test_format_and_json_agree():
    p = _plan("llama-3.1-8b-fp8-h100")
    text = format_plan(p)
    assert f"{p.kv_tokens:8d} tokens = 124 sequences" in text
    assert "verdict: OK" in text
    data = p.to_dict()
    assert data["kv_tokens"] == p.kv_tokens and data["verdict"] == "OK" and data["ok"]
