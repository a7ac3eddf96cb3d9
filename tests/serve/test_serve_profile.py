"""``tritonllm serve --profile``: a cpu-target profile decides the deployment exactly as the
build's repository stage would; flags that would half-override it are refused."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from tritonllm.build.profile import load_profile
from tritonllm.build.repo_values import cpu_deployment
from tritonllm.cli import build_parser, main
from tritonllm.deploy.serve_cli import profile_deployment

PROFILES = Path(__file__).resolve().parents[2] / "build"


def _deployment(*argv: str):
    return profile_deployment(build_parser().parse_args(["serve", *argv]))


def test_the_profile_decides_and_num_threads_still_applies(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text((PROFILES / "smollm2-cpu.yaml").read_text()
                    + "\n".join(["", "  stream_interval: 2", "  postprocessing_instances: 2"]))
    path.write_text(path.read_text().replace("serving:\n", "serving:\n  max_queue_size: 5\n"))
    got = _deployment("--profile", str(path), "--num-threads", "1")
    expected = cpu_deployment(load_profile(path))
    assert got.engine == dataclasses.replace(expected.engine, num_threads=1)
    assert got.ensemble_options() == expected.ensemble_options()
    assert (got.stream_interval, got.postprocessing_instances, got.engine.max_queue_size) == \
        (2, 2, 5)


def test_int8_and_int4_weight_only_profiles_serve_int8_and_int4_weights():
    for mode, weights in (("int8_wo", "int8"), ("int4_wo", "int4"), ("none", "auto")):
        profile = load_profile(PROFILES / "smollm2-cpu.yaml", [f"quantization.mode={mode}"])
        assert cpu_deployment(profile).engine.weights == weights


def test_flags_that_contradict_the_profile_are_refused(capsys):
    code = main(["serve", "--profile", str(PROFILES / "smollm2-cpu.yaml"),
                 "--max-batch-size", "4", "--stream-interval", "3"])
    assert code == 2
    err = capsys.readouterr().err
    assert "--profile: --stream-interval, --max-batch-size would override the profile" in err


def test_a_gpu_profile_is_refused():
    with pytest.raises(ValueError, match="'H100' is not the cpu target"):
        _deployment("--profile", str(PROFILES / "llama-3.1-8b-fp8-h100.yaml"))


def test_a_profile_the_planner_rejects_is_refused():
    profile = load_profile(PROFILES / "smollm2-cpu.yaml", ["parallel.tp_size=2"])
    with pytest.raises(ValueError, match="the planner rejects the profile: parallel.tp_size"):
        cpu_deployment(profile)
