"""Model-size guidance: SLO parsing, the estimates against hand-computed values, fit and ranking."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tritonllm.build.planning import sizing
from tritonllm.build.planning.architectures import KNOWN
from tritonllm.build.planning.gpus import DEVICES
from tritonllm.build.profile import load_profile
from tritonllm.cli import main

PROFILES = Path(__file__).resolve().parents[2] / "build"
H100_8B = PROFILES / "llama-3.1-8b-fp8-h100.yaml"
SLO = sizing.SizingSlo.parse("ttft=300ms,tpot=20ms")


def _profile(name: str = "llama-3.1-8b-fp8-h100", *overrides: str):
    return load_profile(PROFILES / f"{name}.yaml", list(overrides))


def _row(rows, model, mode):
    return next(r for r in rows if (r.model, r.mode) == (model, mode))


def test_slo_parsing_and_errors_name_the_field():
    assert sizing.SizingSlo.parse("ttft=0.5s, tpot=40ms") == sizing.SizingSlo(0.5, 0.04)
    assert sizing.SizingSlo.parse("tpot=40ms") == sizing.SizingSlo(None, 0.04)
    for spec, message in (("ttft=300", "slo.ttft: '300' is not a duration"),
                          ("tpot=fast", "slo.tpot: 'fast' is not a duration"),
                          ("e2e=2s", "slo.e2e: the planner estimates only ttft and tpot"),
                          ("ttft", "slo: 'ttft' is not key=value"),
                          ("", "slo: '' sets no latency limit"),
                          ("ttft=0ms", "slo.ttft: the limit must be > 0")):
        with pytest.raises(ValueError, match=message):
            sizing.SizingSlo.parse(spec)


def test_every_device_has_datasheet_figures_and_a_source():
    for device in DEVICES:
        perf = sizing.PERF[device.name]
        assert perf.bandwidth_gbs > 0 and perf.tflops["bf16"] > 0 and perf.source
        if device.supports_fp8:
            assert perf.tflops["fp8"] == pytest.approx(2 * perf.tflops["bf16"], rel=0.02)


def test_decode_and_prefill_arithmetic_by_hand():
    perf = sizing.PERF["H100"]
    # 1 GB of weights + 4 sequences x 1000 tokens x 1000 B of KV = 1.004 GB per step.
    step = sizing.decode_step_seconds(10**9, 1000, batch=4, seq_len=1000, pp=2, perf=perf)
    assert step == pytest.approx(2 * 1.004e9 / (3350e9 * sizing.BANDWIDTH_EFFICIENCY))
    smol = KNOWN["smollm2-135m"]
    gemm = 2 * 30 * 3_538_944 * 100
    attention = 2 * 30 * 100 * 100 * 576
    assert sizing.prefill_flops(smol, 100) == gemm + attention + 2 * 49152 * 576


def test_llama_8b_bf16_decode_matches_its_published_size():
    """8.03 B parameters in bf16 (Meta's model card) read once per step at 70 % of 3.35 TB/s,
    with a batch of one short sequence: ~6.9 ms per token."""
    profile = _profile("llama-3.1-8b-fp8-h100", "limits.max_batch_size=1",
                       "limits.max_input_len=16", "limits.max_seq_len=32",
                       "limits.max_num_tokens=64", "quantization.mode=none",
                       "quantization.kv_cache=none")
    row = sizing.size_candidate(profile, KNOWN["llama-3.1-8b"], SLO)
    assert row.fits == "yes" and row.batch == 1
    assert row.tpot_s == pytest.approx(8.03e9 * 2 / (3350e9 * 0.7), rel=0.01)
    assert row.decode_tokens_per_s == pytest.approx(1 / row.tpot_s)


def test_ranking_on_one_h100_puts_what_meets_the_slo_first():
    rows = sizing.rank(_profile(), SLO)
    assert len(rows) == len(KNOWN) * 5  # none, int8_wo, int8_sq, fp8, int4_awq; no nvfp4
    assert not any(r.mode == "nvfp4" for r in rows)
    met = [r.meets_slo for r in rows]
    assert met == sorted(met, reverse=True)
    big = _row(rows, "llama-3.1-70b", "none")
    assert big.fits == "no" and big.reason.startswith("memory:") and big.tpot_s is None
    shrunk = _row(rows, "llama-3.1-70b", "fp8")  # 68 GiB of weights leave room for 6 sequences
    assert shrunk.fits == "batch 6" and not shrunk.meets_slo
    assert _row(rows, "llama-3.1-8b", "fp8").meets_slo
    assert not _row(rows, "llama-3.1-8b", "none").meets_slo  # 21.5 ms > 20 ms per token
    # The profile keeps KV-cache reuse on, so modes without FP8 attention cannot keep its FP8 KV
    # cache (trtllm-build would drop paged context FMHA): they are sized with a 16-bit one.
    assert _row(rows, "llama-3.1-8b", "fp8").kv_cache == "fp8"
    awq = _row(rows, "llama-3.1-8b", "int4_awq")
    assert awq.kv_cache == "none" and not awq.meets_slo  # twice the KV bytes: 31.7 ms per token
    best = sizing.suggestion(rows)
    assert best.model == "llama-3.1-8b" and best.mode == "fp8"


def test_precisions_follow_the_device_and_tp_must_divide_the_heads():
    b200 = sizing.rank(_profile("llama-3.1-8b-fp8-h100", "target.gpu=B200"), SLO)
    assert any(r.mode == "nvfp4" and r.fits == "yes" for r in b200)
    a100 = sizing.rank(_profile("llama-3.1-8b-fp8-h100", "target.gpu=A100-80GB",
                                "quantization.kv_cache=none"), SLO)
    assert {r.mode for r in a100} == {"none", "int8_wo", "int8_sq", "int4_awq"}
    cpu = sizing.rank(_profile("smollm2-cpu"), SLO)
    assert {r.mode for r in cpu} == {"none"}
    tp4 = sizing.rank(_profile("llama-3.1-70b-fp8-tp4-h100"), SLO)
    smol = _row(tp4, "smollm2-135m", "none")
    assert smol.fits == "no" and "tp_size" in smol.reason
    awq = next(c for c in sizing.candidate_profiles(_profile(), DEVICES[0], KNOWN["smollm2-135m"])
               if c.quantization.mode == "int4_awq")
    assert awq.quantization.group_size == 64  # 576 is not a multiple of 128


def test_plan_command_prints_the_guidance_and_its_formulas(capsys):
    assert main(["plan", str(H100_8B), "--slo", "ttft=300ms,tpot=20ms"]) == 0
    out = capsys.readouterr().out
    assert "model-size guidance: 1 x H100" in out and "suggestion: llama-3.1-8b" in out
    assert "TPOT = pp x (weights + batch x max_seq_len x KV bytes/token)" in out
    assert "NVIDIA H100 datasheet" in out
    assert main(["plan", str(H100_8B), "--slo", "tpot=20ms", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["verdict"] == "OK" and report["sizing"]["suggestion"]["model"]
    assert main(["plan", str(H100_8B), "--slo", "ttft=fast"]) == 2
    assert "slo.ttft: 'fast' is not a duration" in capsys.readouterr().err
