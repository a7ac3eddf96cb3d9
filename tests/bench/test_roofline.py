"""The roofline benchmark: its probes build and run for every kernel build this CPU runs, the
ceilings follow from the limits as the docstring says, and the command prints both tables."""

import argparse
import re

import pytest

from tritonllm.bench import roofline
from tritonllm.engine import kernel_build


def limits(read_gbs=20.0, gflops=100.0, gprod=100.0):
    return roofline.Limits(1, read_gbs, {"avx2": gflops}, {"avx2": gprod})


def test_a_decode_row_is_bound_by_reading_the_weights_and_many_rows_by_compute():
    params, fp32_bytes = 100_000_000, 400_000_000
    # one row: 0.4 GB at 20 GB/s = 20 ms; 1e8 products at 50e9 FMA/s = 2 ms
    ceiling, bound = roofline.ceiling_tok_s(params, fp32_bytes, 1, limits(), False, "avx2", True)
    assert bound == "memory" and ceiling == pytest.approx(50.0)
    # 16 rows: 32 ms of compute outweighs 20 ms of reading
    ceiling, bound = roofline.ceiling_tok_s(params, fp32_bytes, 16, limits(), False, "avx2", True)
    assert bound == "compute" and ceiling == pytest.approx(500.0)
    # int8 weights: a quarter of the bytes, products at the int16 dot rate (1e11/s here)
    ceiling, bound = roofline.ceiling_tok_s(params, params, 1, limits(), True, "avx2", True)
    assert bound == "memory" and ceiling == pytest.approx(200.0)
    # a prompt chunk reuses each weight for every token: compute only
    ceiling, bound = roofline.ceiling_tok_s(params, fp32_bytes, 512, limits(), False, "avx2",
                                            False)
    assert bound == "compute" and ceiling == pytest.approx(500.0)


@pytest.mark.parametrize("isa", kernel_build.supported_isas(), ids=lambda isa: isa.name)
def test_the_probes_build_and_time_their_work(isa):
    import torch

    lib = roofline._probes(isa)
    assert lib.tl_probe_floats_per_vector() == (16 if isa.name == "avx512" else 8)
    for seconds in (lib.tl_probe_fma(1000, 2), lib.tl_probe_dot16(1000, 2)):
        assert 0 < seconds < 5
    data = torch.ones(1 << 16)
    assert 0 < lib.tl_probe_read(data.data_ptr(), data.numel(), 2, 1) < 5


def test_the_command_prints_the_limits_and_the_engines_fraction(capsys, monkeypatch):
    if not kernel_build.supported_isas():
        pytest.skip("this CPU runs none of our kernel builds")
    monkeypatch.setattr(roofline, "READ_MIB", 64)
    monkeypatch.setattr(roofline, "READ_TRIES", 1)
    parser = argparse.ArgumentParser()
    roofline.add_arguments(parser)
    args = parser.parse_args(["--threads", "1", "--rows", "1", "--prompt-tokens", "32",
                              "--reps", "1"])
    assert roofline.run(args) == 0
    out = capsys.readouterr().out
    assert "read GB/s" in out and "fp32 GFLOP/s avx2" in out
    for weights in roofline.WEIGHTS:
        assert re.search(rf"^{weights} +decode B=1 +1 +memory +[\d.]+ +[\d.]+ +[\d.]+$", out, re.M)
        assert re.search(rf"^{weights} +prefill 32 +1 +compute +[\d.]+ +[\d.]+ +[\d.]+$", out, re.M)
