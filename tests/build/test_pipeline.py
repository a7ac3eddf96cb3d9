"""``tritonllm build`` end to end on CPU through the real CLI: stages, stamps, exit statuses, the
printed trtllm-build command and a filled repository that Triton's protobuf parses."""

from __future__ import annotations

import contextlib
import io
import json
import shlex
from pathlib import Path

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as pb

from tritonllm.cli import main

PROFILES = Path(__file__).resolve().parents[2] / "build"
SMOL_L4 = """\
name: smollm2-fp8-l4
model: {dir: default}
dtype: float16
quantization: {mode: fp8, kv_cache: fp8, calibration_samples: 2, calibration_max_len: 64}
limits: {max_batch_size: 16, max_input_len: 1024, max_seq_len: 2048, max_num_tokens: 2048}
target: {gpu: L4}
serving: {enable_kv_cache_reuse: false, kv_cache_free_gpu_mem_fraction: 0.85}
"""


def _configs(repo: Path) -> dict[str, pb.ModelConfig]:
    parsed = {}
    for path in sorted(repo.glob("*/config.pbtxt")):
        text = path.read_text()
        assert "${" not in text
        parsed[path.parent.name] = text_format.Parse(text, pb.ModelConfig())
    return parsed


def _params(config: pb.ModelConfig) -> dict[str, str]:
    return {k: v.string_value for k, v in config.parameters.items()}


def test_plan_command(capsys):
    assert main(["plan", str(PROFILES / "llama-3.1-8b-fp8-h100.yaml"), "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["verdict"] == "OK" and plan["kv_bytes_per_token"] == 65536
    assert main(["plan", str(PROFILES / "smollm2-cpu.yaml"), "--set", "parallel.tp_size=2"]) == 1
    assert "num_attention_heads=9 is not divisible by tp_size=2" in capsys.readouterr().out
    assert main(["plan", str(PROFILES / "smollm2-cpu.yaml"), "--set", "limits.max_batch=2"]) == 2
    assert "limits.max_batch: unknown key" in capsys.readouterr().err


def test_help_shows_dataclass_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["build", "--help"])
    out = capsys.readouterr().out
    assert "serving.kv_cache_free_gpu_mem_fraction=0.9" in out
    assert "quantization.group_size=128" in out


def _run(argv: list[str]) -> tuple[int, str]:
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        code = main(argv)
    return code, buffer.getvalue()


@pytest.fixture(scope="module")
def gpu_build(tmp_path_factory):
    """A first full build of a GPU-target SmolLM2 profile: (profile, out dir, status, stdout)."""
    work = tmp_path_factory.mktemp("build-l4")
    profile = work / "smollm2-fp8-l4.yaml"
    profile.write_text(SMOL_L4)
    out = work / "out"
    return (profile, out, *_run(["build", str(profile), "--output-dir", str(out)]))


def test_build_without_tensorrt_llm_prints_commands_and_fills_the_repo(gpu_build):
    profile, out, code, printed = gpu_build
    assert code == 3
    for stage in ("plan", "quantize", "verify", "repo"):
        assert f"[{stage}] done" in printed
    assert "[engine] deferred: TensorRT-LLM is not installed" in printed
    command = next(line for line in printed.splitlines() if line.startswith("trtllm-build"))
    argv = shlex.split(command)
    assert argv[argv.index("--checkpoint_dir") + 1] == str(out / "checkpoint")
    assert argv[argv.index("--output_dir") + 1] == str(out / "engine")
    assert argv[argv.index("--use_fp8_context_fmha") + 1] == "enable"  # FP8 + FP8 KV on L4
    assert json.loads((out / "verify.json").read_text())["ok"]
    assert json.loads((out / "plan.json").read_text())["device"] == "L4"
    configs = _configs(out / "model_repository")
    assert set(configs) == {"preprocessing", "postprocessing", "tensorrt_llm", "ensemble"}
    engine = configs["tensorrt_llm"]
    assert engine.backend == "tensorrtllm" and engine.max_batch_size == 16
    assert engine.model_transaction_policy.decoupled
    params = _params(engine)
    assert params["gpt_model_path"] == str(out / "engine")
    assert params["kv_cache_free_gpu_mem_fraction"] == "0.85"
    assert params["enable_kv_cache_reuse"] == "false"
    assert params["batch_scheduler_policy"] == "guaranteed_no_evict"
    assert _params(configs["preprocessing"])["max_input_len"] == "1024"


def test_rebuild_skips_up_to_date_stages_and_redoes_what_changed(gpu_build, capsys):
    profile, out, _, _ = gpu_build
    assert main(["build", str(profile), "--output-dir", str(out)]) == 3
    printed = capsys.readouterr().out
    for stage in ("plan", "quantize", "verify", "repo"):
        assert f"[{stage}] skipped: up to date" in printed
    assert "[engine] deferred" in printed  # never stamped until engines exist
    # A serving option changes the repository only.
    assert main(["build", str(profile), "--output-dir", str(out),
                 "--set", "serving.enable_kv_cache_reuse=true"]) == 3
    printed = capsys.readouterr().out
    assert "[quantize] skipped" in printed and "[repo] done" in printed
    assert _params(_configs(out / "model_repository")["tensorrt_llm"])[
        "enable_kv_cache_reuse"] == "true"


def test_stage_commands_alone(gpu_build, capsys):
    profile, out, _, _ = gpu_build
    assert main(["engine", str(profile), "--output-dir", str(out)]) == 3
    assert "trtllm-build --checkpoint_dir" in capsys.readouterr().out
    assert main(["verify", str(profile), "--output-dir", str(out), "--force"]) == 0
    assert "[verify] done: 273 tensors checked" in capsys.readouterr().out
    empty = out.parent / "empty"
    assert main(["verify", str(profile), "--output-dir", str(empty)]) == 1
    assert "run `tritonllm quantize PROFILE` first" in capsys.readouterr().out


def test_cpu_profile_builds_the_cpu_deployment(tmp_path, capsys):
    out = tmp_path / "cpu"
    assert main(["build", str(PROFILES / "smollm2-cpu.yaml"), "--output-dir", str(out)]) == 0
    assert "[engine] done: cpu target" in capsys.readouterr().out
    configs = _configs(out / "model_repository")
    engine = configs["tensorrt_llm"]
    assert engine.backend == "python" and engine.max_batch_size == 8
    params = _params(engine)
    assert params["max_seq_len"] == "4096" and params["tokens_per_block"] == "16"
    assert params["enable_kv_cache_reuse"] == "true"  # serving.enable_kv_cache_reuse's default
    planned = json.loads((out / "plan.json").read_text())
    assert int(params["max_tokens_in_paged_kv_cache"]) == planned["kv_tokens"]
    assert (out / "model_repository" / "tensorrt_llm" / "1" / "model.py").is_file()


def test_quantize_refuses_a_rejected_plan(tmp_path, capsys):
    code = main(["quantize", str(PROFILES / "smollm2-cpu.yaml"), "--output-dir", str(tmp_path),
                 "--set", "target.gpu=L4", "--set", "quantization.mode=int4_awq"])
    assert code == 1
    out = capsys.readouterr().out
    assert "[quantize] failed: the plan is rejected" in out and "group_size: 64" in out
    assert not (tmp_path / "checkpoint").exists()
