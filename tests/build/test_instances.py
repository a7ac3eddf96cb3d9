"""The planner's ensemble instance counts (tritonllm.build.planning.instances)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from tritonllm.build.planning import instances
from tritonllm.build.planning.instances import instances_for, plan_instances
from tritonllm.build.planning.planner import plan
from tritonllm.build.profile import load_profile
from tritonllm.build.repo_values import ensemble_instances
from tritonllm.build.source import model_arch

PROFILES = Path(__file__).resolve().parents[2] / "build"


def test_counts_follow_cost_rate_and_stream_interval():
    # 10,000 responses/s at POST_US_PER_RESPONSE us each, kept at TARGET_UTILIZATION.
    rate = 10_000
    busy = rate * instances.POST_US_PER_RESPONSE / 1e6 / instances.TARGET_UTILIZATION
    assert instances_for(rate).postprocessing == max(1, -(-busy // 1))
    assert instances_for(rate, stream_interval=4).responses_per_s == rate / 4
    fewer = instances_for(rate, stream_interval=4)
    assert fewer.postprocessing <= instances_for(rate).postprocessing
    assert instances_for(50).postprocessing == instances_for(50).preprocessing == 1
    with pytest.raises(ValueError, match="stream_interval >= 1"):
        instances_for(rate, stream_interval=0)


def test_gpu_profile_keeps_one_exact_postprocessing_instance_and_says_why():
    profile = load_profile(PROFILES / "llama-3.1-8b-fp8-h100.yaml")
    chosen = plan_instances(profile, plan(profile, model_arch(profile)))
    assert chosen.engine_tokens_per_s > 5_000  # memory-bound estimate, batch 64
    assert chosen.postprocessing == 1 < chosen.postprocessing_needed
    assert "preceding_ids" in chosen.describe() and chosen.postprocessing_shortfall > 0
    assert "instances per GPU" in chosen.per_gpu()
    unary = dataclasses.replace(profile, serving=dataclasses.replace(profile.serving,
                                                                     decoupled=False))
    whole = plan_instances(unary, plan(unary, model_arch(unary)))
    assert whole.postprocessing == chosen.postprocessing_needed  # whole responses: exact


def test_profile_values_win_over_the_planner():
    profile = load_profile(PROFILES / "llama-3.1-8b-fp8-h100.yaml")
    fixed = dataclasses.replace(profile, serving=dataclasses.replace(
        profile.serving, preprocessing_instances=3, postprocessing_instances=1))
    assert ensemble_instances(fixed) == {"preprocessing_instances": 3,
                                         "postprocessing_instances": 1, "stream_interval": 1}
    assert ensemble_instances(profile)["preprocessing_instances"] >= 1
