"""Every shipped GPU profile renders a ``tensorrt_llm`` config that the ``tensorrtllm`` backend
can load: each parameter it reads unguarded is present with a usable value (the list, with the
upstream file and line of each read, is tritonllm.repo.backend_parameters)."""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as pb

from tritonllm.build.planning.gpus import get_device
from tritonllm.build.profile import load_profile
from tritonllm.build.repo_values import repo_settings
from tritonllm.repo import backend_parameters
from tritonllm.repo.render import render_configs

PROFILES = sorted(Path(__file__).resolve().parents[2].joinpath("build").glob("*.yaml"))
GPU_PROFILES = [p for p in PROFILES if not get_device(load_profile(p).target.gpu).is_cpu]


def rendered_parameters(profile, decoupled: bool, reuse: bool) -> dict[str, str]:
    profile = dataclasses.replace(profile, serving=dataclasses.replace(
        profile.serving, decoupled=decoupled, enable_kv_cache_reuse=reuse))
    settings = repo_settings(profile, engine_dir=Path("/engines/x"),
                             tokenizer_dir=Path("/models/x"), max_tokens_in_paged_kv_cache=4096)
    config = text_format.Parse(render_configs(settings)["tensorrt_llm"], pb.ModelConfig())
    assert config.backend == "tensorrtllm"
    return {key: value.string_value for key, value in config.parameters.items()}


def test_every_shipped_gpu_profile_is_covered():
    assert len(GPU_PROFILES) >= 4  # 8B fp8, 70B fp8 tp4, 70B int4-AWQ tp2, 1B int8 on L4


@pytest.mark.parametrize("path", GPU_PROFILES, ids=lambda p: p.stem)
@pytest.mark.parametrize("decoupled,reuse", list(itertools.product([True, False], repeat=2)))
def test_rendered_config_has_every_required_parameter(path, decoupled, reuse):
    params = rendered_parameters(load_profile(path), decoupled, reuse)
    assert backend_parameters.problems(params) == []


def test_guided_decoding_is_rendered_on_with_the_tokenizer_info_beside_the_engines():
    params = rendered_parameters(load_profile(GPU_PROFILES[0]), True, True)
    assert params["guided_decoding_backend"] == "xgrammar"
    assert params["xgrammar_tokenizer_info_path"] == "/engines/x/xgrammar_tokenizer_info.json"
    off = load_profile(GPU_PROFILES[0])
    off = dataclasses.replace(off, serving=dataclasses.replace(off.serving,
                                                               guided_decoding_backend=""))
    settings = repo_settings(off, engine_dir=Path("/engines/x"), tokenizer_dir=Path("/m"),
                             max_tokens_in_paged_kv_cache=4096)
    config = text_format.Parse(render_configs(settings)["tensorrt_llm"], pb.ModelConfig())
    assert config.parameters["guided_decoding_backend"].string_value == ""
    assert config.parameters["xgrammar_tokenizer_info_path"].string_value == ""


def test_the_gpu_repository_has_guided_decoding_inputs_and_no_cpu_only_tensors():
    settings = repo_settings(load_profile(GPU_PROFILES[0]), engine_dir=Path("/engines/x"),
                             tokenizer_dir=Path("/m"), max_tokens_in_paged_kv_cache=4096)
    configs = {name: text_format.Parse(text, pb.ModelConfig())
               for name, text in render_configs(settings).items()}
    for name in ("tensorrt_llm", "ensemble"):
        inputs = {i.name for i in configs[name].input}
        outputs = {o.name for o in configs[name].output}
        assert {"guided_decoding_guide_type", "guided_decoding_guide"} <= inputs
        assert "num_top_log_probs" not in inputs  # Triton refuses it by name on GPU
        assert not {"top_log_probs", "top_log_prob_ids", "preceding_ids"} & outputs
    step = next(s for s in configs["ensemble"].ensemble_scheduling.step
                if s.model_name == "tensorrt_llm")
    assert step.input_map["guided_decoding_guide"] == "guided_decoding_guide"
    assert "num_top_log_probs" not in step.input_map


@pytest.mark.parametrize("params,expected", [
    ({}, "gpt_model_type: absent (model_instance_state.cc:62 reads it unguarded)"),
    ({"gpt_model_type": "${batching_strategy}"}, "gpt_model_type: '${batching_strategy}' is "
                                                 "not one of"),
    ({"guided_decoding_backend": "outlines"}, "guided_decoding_backend: 'outlines' is not"),
    ({"gpt_model_path": ""}, "gpt_model_path: empty, and the backend needs a value"),
])
def test_the_check_names_what_would_fail(params, expected):
    assert any(p.startswith(expected) for p in backend_parameters.problems(params))


def test_off_values_pass_the_check():
    ok = {"gpt_model_type": "inflight_fused_batching", "tokenizer_dir": "${tokenizer_dir}",
          "xgrammar_tokenizer_info_path": "", "guided_decoding_backend": "",
          "gpt_model_path": "/engines/x"}
    assert backend_parameters.problems(ok) == []


def test_the_renderer_refuses_a_config_the_backend_would_not_load():
    from tritonllm.repo.render import GpuEngineSettings, RepoSettings

    settings = RepoSettings(tokenizer_dir="/models/x", max_input_len=8, max_seq_len=16,
                            target="gpu", gpu_engine=GpuEngineSettings(engine_dir=""))
    with pytest.raises(ValueError, match="tensorrtllm backend would not load this config: "
                                         "gpt_model_path: empty"):
        render_configs(settings)


@pytest.mark.parametrize("kwargs,match", [
    ({"guided_decoding_backend": "outlines"}, "guided_decoding_backend: must be 'xgrammar'"),
    ({"guided_decoding_backend": "xgrammar"}, "xgrammar_tokenizer_info_path: needed"),
])
def test_guided_decoding_settings_are_checked(kwargs, match):
    from tritonllm.repo.render import GpuEngineSettings

    with pytest.raises(ValueError, match=match):
        GpuEngineSettings(engine_dir="/engines/x", **kwargs)


def test_lookahead_is_rendered_with_its_three_sizes():
    profile = load_profile(GPU_PROFILES[0], ["speculative.mode=lookahead",
                                             "speculative.lookahead_window_size=5"])
    params = rendered_parameters(profile, True, True)
    assert params["decoding_mode"] == "lookahead"
    assert [params[name] for name in backend_parameters.LOOKAHEAD_SIZES] == ["5", "3", "4"]
    assert backend_parameters.problems(params) == []
    del params["lookahead_ngram_size"]
    assert backend_parameters.problems(params) == [
        "lookahead_ngram_size: None is not a size, and decoding_mode lookahead needs one "
        "(model_instance_state.cc:632-634)"]
    plain = rendered_parameters(load_profile(GPU_PROFILES[0]), True, True)
    assert "decoding_mode" not in plain and "lookahead_window_size" not in plain
