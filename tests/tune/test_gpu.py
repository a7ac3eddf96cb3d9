"""``tritonllm tune`` on a GPU node, up to the GPU: each candidate's engine from the engine cache
(shared with the base for a runtime-only change, its own build otherwise), its repository
rendered with the candidate's values, and tritonserver started with the entrypoint's command
line, which here fails where the GPU is needed (no TensorRT-LLM backend), as a clear error.

Where the entrypoint runs ``tritonllm build``, a stand-in builder runs (see tests/deploy/
test_cache.py): a real process that writes the engine files and manifest and counts its runs."""

from __future__ import annotations

import dataclasses

import pytest

from tests.deploy.conftest import REPO_ROOT
from tests.deploy import test_cache
from tests.deploy.test_cache import H100, engine_model_config, write_profile
from tests.helpers import tritonserver_shim
from tritonllm.build.profile import engine_hash
from tritonllm.deploy import cache
from tritonllm.deploy.entrypoint import EntrypointOptions, engine_root, plan_gpu
from tritonllm.deploy.node import NodeFacts
from tritonllm.loadtest.slo import Slo
from tritonllm.serve.launcher import server_env
from tritonllm.tune.gpu import GpuMeasurer
from tritonllm.tune.space import candidate_profile, default_space, rebuild_stages

builder = test_cache.builder  # the stand-in builder, as a fixture of these tests too


def measurer(tmp_path, base, command, facts=H100) -> GpuMeasurer:
    return GpuMeasurer(tmp_path / "tune", "16/16", Slo.parse("ttft=1s"), 5.0, base=base,
                       facts=facts, env=server_env(), build_command=command,
                       tritonserver=str(tritonserver_shim(tmp_path)))


def test_candidates_share_or_build_engines_and_start_the_entrypoints_server(tmp_path, builder):
    command, runs = builder
    base = write_profile(tmp_path / "p.yaml")
    m = measurer(tmp_path, base, command)
    with pytest.raises(ValueError, match="(?s)did not start: .*failed to load:.*backend 'tensorrtllm'"):
        m.start(base)
    assert runs.read_text() == "1" and m.server is None
    base_root = engine_root(base.name, H100)  # the entry `tritonllm deploy entrypoint` serves
    assert cache.find_engine_dir(base_root / "build") is not None

    runtime = candidate_profile(base, {"serving.batch_scheduler_policy": "max_utilization"})
    assert rebuild_stages(base, runtime) == ()
    with pytest.raises(ValueError, match="did not start"):
        m.start(runtime)
    assert runs.read_text() == "1"  # the base's engine, re-rendered around
    config = engine_model_config(base_root / "model_repository")
    assert config.parameters["batch_scheduler_policy"].string_value == "max_utilization"

    rebuild = candidate_profile(base, {"limits.max_batch_size": 32})
    with pytest.raises(ValueError, match="did not start"):
        m.start(rebuild)
    assert runs.read_text() == "2"
    root = engine_root(f"{base.name}-{engine_hash(rebuild)[:12]}", H100)
    assert engine_model_config(root / "model_repository").max_batch_size == 32
    assert (tmp_path / "tune" / "repos").is_dir()

    # the written winner (its own name) finds the engine tuning built for it
    tuned = dataclasses.replace(rebuild, name=f"{base.name}-tuned")
    link = m.link_engine(tuned)
    assert link == engine_root(tuned.name, H100) and link.resolve() == root.resolve()
    assert plan_gpu(tuned, H100, EntrypointOptions(), {}).decision.action == cache.REUSE


def test_a_failed_build_or_a_node_without_tensorrt_llm_is_a_clear_error(tmp_path, builder,
                                                                         monkeypatch):
    command, _ = builder
    base = write_profile(tmp_path / "p.yaml")
    with pytest.raises(ValueError, match="TensorRT-LLM is not installed here"):
        measurer(tmp_path, base, command, facts=NodeFacts(None, None, None, 0))
    m = measurer(tmp_path, base, command)
    with pytest.raises(ValueError, match="the planner rejects it: .*fp8"):
        m.start(candidate_profile(base, {"target.gpu": "A100"}))  # fp8 before Ada
    assert not (tmp_path / "runs").exists()  # refused before any build
    monkeypatch.setenv("BUILD_FAIL", "1")
    with pytest.raises(ValueError, match="engine build failed with status 1"):
        measurer(tmp_path, base, command).start(base)


def test_the_gpu_space_holds_backend_parameters_and_gpu_sizes(tmp_path, builder):
    base = write_profile(tmp_path / "p.yaml")
    runtime = default_space(gpu=True)
    assert "serving.stream_interval" not in {d.key for d in runtime}  # not a backend parameter
    for dim in runtime:
        for value in dim.values:
            assert rebuild_stages(base, candidate_profile(base, {dim.key: value})) == ()
    rebuild = {d.key: d for d in default_space(include_rebuild=True, gpu=True)}
    assert min(rebuild["limits.max_batch_size"].values) >= 64
    assert rebuild_stages(base, candidate_profile(base, {"limits.max_num_tokens": 4096})) == (
        "engine",)


def test_tune_of_a_gpu_profile_here_names_what_is_missing(tmp_path, capsys):
    from tritonllm.cli import main

    args = ["tune", str(REPO_ROOT / "build" / "llama-3.1-8b-fp8-h100.yaml"), "--workload",
            "16/16", "--slo", "ttft=1s", "--out", str(tmp_path)]
    assert main(args) == 2
    assert "TensorRT-LLM is not installed here" in capsys.readouterr().err
    assert main([*args, "--num-threads", "2"]) == 2
    assert "num_threads: sets the threads of a CPU engine" in capsys.readouterr().err


def test_probes_on_a_gpu_node_spread_the_load_over_locust_processes(tmp_path, builder,
                                                                     monkeypatch):
    from tritonllm.tune import gpu

    monkeypatch.setattr(gpu.os, "cpu_count", lambda: 32)
    assert gpu.gpu_node_processes() == gpu.MAX_PROCESSES
    monkeypatch.setattr(gpu.os, "cpu_count", lambda: 2)
    assert gpu.gpu_node_processes() == 1
    base = write_profile(tmp_path / "p.yaml")
    m = GpuMeasurer(tmp_path / "tune", "16/16", Slo.parse("ttft=1s"), 5.0, base=base,
                    facts=H100, processes=6)
    argv = m.locust_run("search-r8", users=4, rate=8.0, run_time=5, requests=40,
                        host="http://127.0.0.1:8000").command()
    assert argv[argv.index("--processes") + 1] == "6"
    assert argv[argv.index("-u") + 1] == "6"  # a user per process at least
    assert argv[argv.index("--request-rate") + 1] == "8"
