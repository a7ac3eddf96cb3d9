"""Quantize + export + verify on CPU for real (SmolLM2 and a tiny random Llama), and the verifier
catching broken checkpoints."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from tritonllm.build import trtllm_layout
from tritonllm.engine.trtllm_checkpoint import open_ranks, read_config
from tritonllm.build.verify import unpack_int4, verify

# (mode, kv_cache, tp, expected quant_algo, expected kv algo): the five SmolLM2 exports.
SMOL_CASES = [
    ("none", "none", 1, None, None),
    ("int8_sq", "none", 3, "W8A8_SQ_PER_CHANNEL", None),
    ("fp8", "fp8", 1, "FP8", "FP8"),
    ("int4_awq", "none", 1, "W4A16_AWQ", None),
    ("int8_wo", "int8", 3, "W8A16", "INT8"),
]


@pytest.mark.parametrize("mode, kv, tp, algo, kv_algo", SMOL_CASES,
                         ids=[f"{c[0]}-kv{c[1]}-tp{c[2]}" for c in SMOL_CASES])
def test_smollm2_export_verifies(export, make_profile, model_dir, mode, kv, tp, algo, kv_algo):
    # A coarse AWQ search grid keeps the test quick; the accuracy report uses the default 0.1.
    options = {"group_size": 64, "awq_alpha_step": 0.5} if mode == "int4_awq" else {}
    ckpt = export(model_dir, f"smol-{mode}", tp=tp, mode=mode, kv_cache=kv, **options)
    config = read_config(ckpt)
    assert config["quantization"]["quant_algo"] == algo
    assert config["quantization"]["kv_cache_quant_algo"] == kv_algo
    assert config["mapping"] == {"world_size": tp, "tp_size": tp, "pp_size": 1}
    # The export's config is fixed where ModelOpt leaves it incomplete under transformers 5.
    assert config["rotary_base"] == 100000.0 and config["rotary_scaling"] is None
    assert not (ckpt / "quant_cfg.json").exists()
    profile = make_profile(model_dir, tp=tp, mode=mode, kv_cache=kv, **options)
    report = verify(profile, ckpt, model_dir)
    assert report.ok, report.problems
    assert report.tensors_checked == 3 + 9 * 30
    if algo in ("W8A8_SQ_PER_CHANNEL", "FP8", "W4A16_AWQ"):
        assert 0.1 < report.worst_bound_ratio <= 1.0  # rounding really happened, within bound
    else:
        assert report.worst_bound_ratio == 0.0  # stored exactly


# (mode, kv_cache, tp, expected quant_algo, expected kv algo): every quantized mode on the tiny
# Llama, quick enough for both dependency sets (`make test-gpuset` runs it under ModelOpt 0.37).
TINY_CASES = [
    ("fp8", "fp8", 1, "FP8", "FP8"),
    ("int8_sq", "none", 2, "W8A8_SQ_PER_CHANNEL", None),
    ("int4_awq", "none", 1, "W4A16_AWQ", None),
    ("int8_wo", "int8", 2, "W8A16", "INT8"),
]


@pytest.mark.parametrize("mode, kv, tp, algo, kv_algo", TINY_CASES,
                         ids=[f"{c[0]}-kv{c[1]}-tp{c[2]}" for c in TINY_CASES])
def test_tiny_export_verifies(export, make_profile, tiny_llama_dir, mode, kv, tp, algo, kv_algo):
    options = {"group_size": 64, "awq_alpha_step": 0.5} if mode == "int4_awq" else {}
    ckpt = export(tiny_llama_dir, f"tiny-{mode}", tp=tp, mode=mode, kv_cache=kv, **options)
    config = read_config(ckpt)
    assert config["quantization"]["quant_algo"] == algo
    assert config["quantization"]["kv_cache_quant_algo"] == kv_algo
    assert config["mapping"] == {"world_size": tp, "tp_size": tp, "pp_size": 1}
    assert config["rotary_base"] == 50000.0
    profile = make_profile(tiny_llama_dir, tp=tp, mode=mode, kv_cache=kv, **options)
    report = verify(profile, ckpt, tiny_llama_dir)
    assert report.ok, report.problems


@pytest.fixture(scope="module")
def tiny_fp16(export, tiny_llama_dir):
    return export(tiny_llama_dir, "tiny-fp16-tp2", tp=2)


@pytest.fixture(scope="module")
def tiny_awq(export, tiny_llama_dir):
    return export(tiny_llama_dir, "tiny-awq", mode="int4_awq", group_size=64, awq_alpha_step=0.5)


def _copy(src, tmp_path):
    dst = tmp_path / "ckpt"
    shutil.copytree(src, dst)
    return dst


def _edit_rank(ckpt, rank, edit):
    path = ckpt / f"rank{rank}.safetensors"
    tensors = load_file(path)
    edit(tensors)
    save_file(tensors, path)


def test_tiny_layouts_verify(make_profile, tiny_llama_dir, tiny_fp16, tiny_awq):
    assert verify(make_profile(tiny_llama_dir, tp=2), tiny_fp16, tiny_llama_dir).ok
    awq = make_profile(tiny_llama_dir, mode="int4_awq", group_size=64)
    assert verify(awq, tiny_awq, tiny_llama_dir).ok


def test_verify_catches_swapped_shards(make_profile, tiny_llama_dir, tiny_fp16, tmp_path):
    ckpt = _copy(tiny_fp16, tmp_path)
    name = "transformer.layers.1.mlp.proj.weight"
    # Copies: safetensors 0.6 (the GPU image's set) maps the file, and the edits rewrite it.
    first, second = (load_file(ckpt / f"rank{r}.safetensors")[name].clone() for r in (0, 1))
    expected = _max_diff(first, second)
    _edit_rank(ckpt, 0, lambda t: t.update({name: second}))
    _edit_rank(ckpt, 1, lambda t: t.update({name: first}))
    report = verify(make_profile(tiny_llama_dir, tp=2), ckpt, tiny_llama_dir)
    assert report.problems == ("model.layers.1.mlp.down_proj.weight: differs from the source "
                               f"(max |diff| {expected})",)


def _max_diff(a, b):
    return f"{(a.float() - b.float()).abs().max().item():.3g}"


def test_verify_catches_k_and_v_swapped(make_profile, tiny_llama_dir, tiny_fp16, tmp_path):
    ckpt = _copy(tiny_fp16, tmp_path)

    def swap(t):
        q, k, v = t["transformer.layers.0.attention.qkv.weight"].split([64, 32, 32])
        t["transformer.layers.0.attention.qkv.weight"] = torch.cat([q, v, k])

    _edit_rank(ckpt, 1, swap)
    report = verify(make_profile(tiny_llama_dir, tp=2), ckpt, tiny_llama_dir)
    assert {p.split(":")[0] for p in report.problems} == {
        "model.layers.0.self_attn.k_proj.weight", "model.layers.0.self_attn.v_proj.weight"}


def test_verify_catches_config_disagreements(make_profile, tiny_llama_dir, tiny_fp16, tmp_path):
    ckpt = _copy(tiny_fp16, tmp_path)
    config = json.loads((ckpt / "config.json").read_text())
    config["rotary_base"] = 10000.0  # what TensorRT-LLM assumes when the key is missing
    config["quantization"]["smooth_alpha"] = 0.5  # not a QuantConfig field
    (ckpt / "config.json").write_text(json.dumps(config))
    report = verify(make_profile(tiny_llama_dir, tp=2, mode="fp8"), ckpt, tiny_llama_dir)
    assert "config.json: rotary_base is 10000.0, expected 50000.0" in report.problems
    assert "config.json: quantization.quant_algo is None, expected 'FP8'" in report.problems
    assert any("smooth_alpha is not a QuantConfig field" in p for p in report.problems)
    assert report.notes == ("weights not compared: fix the config and layout first",)


def test_verify_catches_missing_and_misshapen_tensors(make_profile, tiny_llama_dir, tiny_fp16,
                                                      tmp_path):
    ckpt = _copy(tiny_fp16, tmp_path)

    def damage(t):
        del t["transformer.layers.2.post_layernorm.weight"]
        t["transformer.layers.3.attention.qkv.weight"] = \
            t["transformer.layers.3.attention.qkv.weight"][:96]
        t["transformer.layers.3.attention.extra.weight"] = torch.zeros(2)

    _edit_rank(ckpt, 0, damage)
    problems = verify(make_profile(tiny_llama_dir, tp=2), ckpt, tiny_llama_dir).problems
    assert problems == (
        "rank0: missing transformer.layers.2.post_layernorm.weight (128,) float16",
        "rank0: unexpected tensor transformer.layers.3.attention.extra.weight",
        "rank0: transformer.layers.3.attention.qkv.weight is (96, 128) float16, expected "
        "(128, 128) float16")


def test_verify_catches_a_transposed_square_weight(make_profile, tiny_llama_dir, tiny_fp16,
                                                   tmp_path):
    ckpt = _copy(tiny_fp16, tmp_path)
    name = "transformer.layers.3.mlp.fc.weight"  # 256/2 x 128: square on each tp rank
    _edit_rank(ckpt, 0, lambda t: t.update({name: t[name].T.contiguous()}))
    problems = verify(make_profile(tiny_llama_dir, tp=2), ckpt, tiny_llama_dir).problems
    assert len(problems) == 1
    assert problems[0].startswith("model.layers.3.mlp.gate_proj.weight: differs from the source")


def test_verify_catches_a_quantized_value_beyond_its_bound(make_profile, tiny_llama_dir,
                                                           tiny_awq, tmp_path):
    ckpt = _copy(tiny_awq, tmp_path)
    name = "transformer.layers.0.mlp.gate.weight"

    def bump(t):
        packed = t[name].view(torch.uint8).clone()
        packed[0, 0] ^= 0x04  # flip one bit of the int4 at row 0, column 0
        t[name] = packed.view(torch.int8)

    _edit_rank(ckpt, 0, bump)
    report = verify(make_profile(tiny_llama_dir, mode="int4_awq", group_size=64), ckpt,
                    tiny_llama_dir)
    assert len(report.problems) == 1
    assert report.problems[0].startswith("model.layers.0.mlp.up_proj.weight: 1 of 32768 "
                                         "elements beyond the quantization bound")


def test_unpack_int4_matches_modelopt_packing():
    values = torch.tensor([[-8, 7, 0], [3, -1, 5], [1, 2, -3], [-4, 6, 4]], dtype=torch.int8)
    low, high = values[0::2].T & 0x0F, values[1::2].T & 0x0F  # rows 2k / 2k+1 -> nibbles
    packed = (low | (high << 4)).to(torch.uint8).T.contiguous().view(torch.int8)
    assert torch.equal(unpack_int4(packed), values.float())


def test_layout_spec_matches_every_export(tiny_fp16, tiny_awq):
    for ckpt in (tiny_fp16, tiny_awq):
        config = read_config(ckpt)
        assert trtllm_layout.check_config(config) == []
        for rank, file in enumerate(open_ranks(ckpt, config)):
            found = {n: file.spec(n) for n in file}
            assert trtllm_layout.check_tensors(config, rank, found) == []
            assert set(found) <= set(trtllm_layout.expected_tensors(config, rank))
