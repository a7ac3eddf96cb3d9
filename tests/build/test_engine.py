"""trtllm-build command lines against TensorRT-LLM 1.1.0's CLI, and the engine stage on a machine
without TensorRT-LLM (commands printed, exit status 3)."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

import pytest

from tritonllm.build.engine import (EXIT_ENGINE_DEFERRED, build_engine, make_manifest,
                                    trtllm_build_command)
from tritonllm.build.manifest import check_manifest
from tritonllm.build.profile import engine_hash, from_dict, load_profile

PROFILES = Path(__file__).resolve().parents[2] / "build"
GPU_PROFILES = ["llama-3.1-8b-fp8-h100", "llama-3.1-70b-fp8-tp4-h100",
                "llama-3.1-70b-int4awq-tp2-h100", "llama-3.2-1b-int8wo-l4"]


def trtllm_build_1_2_1_parser() -> argparse.ArgumentParser:
    """trtllm-build's options as TensorRT-LLM 1.1.0 defines them (commands/build.py, and the
    plugin options plugin.add_plugin_argument adds from PluginConfig), re-declared here from
    the source so an unknown flag or value fails to parse. Abbreviations are refused so a typo
    cannot pass for a prefix."""
    p = argparse.ArgumentParser(prog="trtllm-build", allow_abbrev=False)
    for name in ("--checkpoint_dir", "--model_config", "--build_config", "--output_dir",
                 "--input_timing_cache", "--output_timing_cache", "--visualize_network"):
        p.add_argument(name, type=str)
    for name in ("--max_batch_size", "--max_input_len", "--max_beam_width", "--max_num_tokens",
                 "--opt_num_tokens", "--max_encoder_input_len", "--workers", "--max_draft_len",
                 "--max_prompt_embedding_table_size", "--tokens_per_block", "--max_lora_rank"):
        p.add_argument(name, type=int)
    p.add_argument("--max_seq_len", "--max_decoder_seq_len", dest="max_seq_len", type=int)
    p.add_argument("--kv_cache_type", choices=["continuous", "paged", "disabled"])
    # build.py lines 289-295 at commit 008b2b8.
    p.add_argument("--speculative_decoding_mode", choices=[
        "draft_tokens_external", "lookahead_decoding", "medusa", "explicit_draft_tokens",
        "eagle"])
    p.add_argument("--log_level", choices=["internal_error", "error", "warning", "info",
                                           "verbose", "debug", "trace"])
    dtypes = ["auto", "float16", "float32", "bfloat16", "int32", "disable"]
    p.add_argument("--gemm_plugin", choices=dtypes[:-1] + ["fp8", "nvfp4", "disable"])
    for name in ("--gpt_attention_plugin", "--bert_attention_plugin", "--nccl_plugin",
                 "--moe_plugin", "--mamba_conv1d_plugin", "--lora_plugin"):
        p.add_argument(name, choices=dtypes)
    for name in ("context_fmha", "bert_context_fmha_fp32_acc", "remove_input_padding",
                 "use_paged_context_fmha", "use_fp8_context_fmha", "fuse_fp4_quant",
                 "multiple_profiles", "paged_state", "streamingllm", "norm_quant_fusion",
                 "reduce_fusion", "user_buffer", "use_fused_mlp", "pp_reduce_scatter",
                 "dora_plugin"):
        p.add_argument("--" + name, choices=["enable", "disable"])
    return p


def _command(name: str, **overrides) -> list[str]:
    profile = load_profile(PROFILES / f"{name}.yaml",
                           [f"{k.replace('__', '.')}={v}" for k, v in overrides.items()])
    return trtllm_build_command(profile, Path("/ckpt"), Path("/engines"))


@pytest.mark.parametrize("name", GPU_PROFILES)
def test_commands_parse_with_the_pinned_cli(name):
    command = _command(name)
    assert command[0] == "trtllm-build"
    args = trtllm_build_1_2_1_parser().parse_args(command[1:])
    profile = load_profile(PROFILES / f"{name}.yaml")
    assert (args.checkpoint_dir, args.output_dir) == ("/ckpt", "/engines")
    assert (args.max_batch_size, args.max_input_len, args.max_seq_len, args.max_num_tokens) == (
        profile.limits.max_batch_size, profile.limits.max_input_len, profile.limits.max_seq_len,
        profile.limits.max_num_tokens)
    assert args.kv_cache_type == "paged" and args.max_beam_width == 1
    assert args.workers == profile.parallel.world_size
    # multiple_profiles and opt_num_tokens refuse each other in trtllm-build.
    assert args.opt_num_tokens is None


def test_pinned_parser_rejects_what_1_2_1_would():
    parser = trtllm_build_1_2_1_parser()
    with pytest.raises(SystemExit):
        parser.parse_args(["--paged_kv_cache_typo", "enable"])
    with pytest.raises(SystemExit):
        parser.parse_args(["--kv_cache_type", "paged_v2"])


def test_feature_switches_follow_the_profile():
    def flag(command, name):
        return command[command.index(name) + 1]

    fp8 = _command("llama-3.1-8b-fp8-h100")
    assert flag(fp8, "--use_fp8_context_fmha") == "enable"  # FP8 + FP8 KV on Hopper
    assert flag(fp8, "--use_paged_context_fmha") == "enable"  # KV reuse / chunked context
    assert flag(_command("llama-3.1-70b-int4awq-tp2-h100"), "--use_fp8_context_fmha") == "disable"
    plain = _command("llama-3.1-8b-fp8-h100", serving__enable_kv_cache_reuse="false",
                     serving__enable_chunked_context="false",
                     limits__max_num_tokens=8192, engine__multiple_profiles="false")
    assert flag(plain, "--use_paged_context_fmha") == "disable"
    assert flag(plain, "--multiple_profiles") == "disable"
    assert flag(_command("llama-3.1-70b-fp8-tp4-h100", engine__workers=2), "--workers") == "2"


def test_exact_command_line_for_the_8b_profile():
    assert shlex.join(_command("llama-3.1-8b-fp8-h100")) == (
        "trtllm-build --checkpoint_dir /ckpt --output_dir /engines --max_batch_size 64 "
        "--max_input_len 4096 --max_seq_len 8192 --max_num_tokens 8192 --max_beam_width 1 "
        "--gemm_plugin auto --gpt_attention_plugin auto --kv_cache_type paged "
        "--tokens_per_block 32 --remove_input_padding enable --context_fmha enable "
        "--use_paged_context_fmha enable --use_fp8_context_fmha enable "
        "--multiple_profiles enable --workers 1")


def test_a_lookahead_profile_builds_for_exactly_its_draft_length():
    parser = trtllm_build_1_2_1_parser()
    default = parser.parse_args(_command("llama-3.1-8b-fp8-h100")[1:])
    assert default.speculative_decoding_mode is None and default.max_draft_len is None
    # (W, N, G) = (4, 3, 4): (N - 2) + (W - 1 + G) * (N - 1) = 1 + 7 * 2.
    args = parser.parse_args(_command("llama-3.1-8b-fp8-h100", speculative__mode="lookahead")[1:])
    assert (args.speculative_decoding_mode, args.max_draft_len) == ("lookahead_decoding", 15)
    # TensorRT-LLM's lookahead example: [7, 7, 7] builds with --max_draft_len=83.
    seven = {f"speculative__lookahead_{size}": 7
             for size in ("window_size", "ngram_size", "verification_set_size")}
    assert parser.parse_args(_command("llama-3.1-8b-fp8-h100", speculative__mode="lookahead",
                                      **seven)[1:]).max_draft_len == 83


def test_lookahead_sizes_change_the_engine_only_when_lookahead_is_on():
    base = load_profile(PROFILES / "llama-3.1-8b-fp8-h100.yaml")
    sized = load_profile(PROFILES / "llama-3.1-8b-fp8-h100.yaml",
                         ["speculative.lookahead_window_size=7"])
    assert engine_hash(sized) == engine_hash(base)  # mode off: the engine does not use them
    on = load_profile(PROFILES / "llama-3.1-8b-fp8-h100.yaml", ["speculative.mode=lookahead"])
    on_sized = load_profile(PROFILES / "llama-3.1-8b-fp8-h100.yaml",
                            ["speculative.mode=lookahead", "speculative.lookahead_window_size=7"])
    assert len({engine_hash(base), engine_hash(on), engine_hash(on_sized)}) == 3


def test_without_tensorrt_llm_the_commands_are_returned_not_run(tmp_path):
    pytest.importorskip("torch")
    profile = load_profile(PROFILES / "llama-3.1-70b-fp8-tp4-h100.yaml")
    result = build_engine(profile, tmp_path / "ckpt", tmp_path / "engine")
    assert not result.built and result.deferred
    assert "TensorRT-LLM is not installed" in result.reason
    assert result.shell().startswith("trtllm-build --checkpoint_dir")
    assert not (tmp_path / "engine").exists()
    assert EXIT_ENGINE_DEFERRED == 3


def test_cpu_target_has_nothing_to_compile(tmp_path):
    result = build_engine(load_profile(PROFILES / "smollm2-cpu.yaml"), tmp_path, tmp_path)
    assert not result.built and not result.deferred and result.reason is None


def test_manifest_records_the_profile_and_detects_changes():
    profile = load_profile(PROFILES / "llama-3.1-70b-fp8-tp4-h100.yaml")
    manifest = make_manifest(profile, "1.1.0", "NVIDIA H100 80GB HBM3", "9.0")
    assert (manifest.tp_size, manifest.quant_algo, manifest.kv_cache_quant_algo) == (4, "FP8",
                                                                                     "FP8")
    assert check_manifest(manifest, profile_hash=engine_hash(profile), gpu_count=4) is None
    changed = from_dict({**profile.to_dict(), "limits": {**profile.to_dict()["limits"],
                                                        "max_batch_size": 128}})
    assert "rebuild" in check_manifest(manifest, profile_hash=engine_hash(changed))
