import pytest

from tritonllm.loadtest.metrics import RequestRecord
from tritonllm.loadtest.slo import Slo, evaluate, parse_duration, parse_fraction


def rec(ttft, end, out, error=None, chunks=None):
    times = chunks or (ttft, end)
    return RequestRecord("r", "t", 0.0, end, streamed=True, chunk_times=times, output_tokens=out,
                         error=error)


def test_parse_spec_with_units_and_attainment():
    slo = Slo.parse("ttft=500ms, tpot=50ms ,e2e=2s,itl=250000us,attainment=95%")
    assert slo.limits == pytest.approx({"ttft": 0.5, "tpot": 0.05, "e2e": 2.0, "itl": 0.25})
    assert slo.attainment == pytest.approx(0.95)
    assert Slo.parse("ttft=1s").attainment == 0.9


@pytest.mark.parametrize("spec, field", [
    ("ttft=500", "slo.ttft"), ("latency=1s", "unknown metric"), ("ttft", "key=value"),
    ("attainment=0.9", "no latency limit"), ("ttft=1s,attainment=150%", "slo.attainment"),
    ("ttft=0ms", "slo.ttft"),
])
def test_bad_specs_name_the_field(spec, field):
    with pytest.raises(ValueError, match=field):
        Slo.parse(spec)


def test_duration_and_fraction_parsing():
    assert parse_duration("1.5m", "x") == 90.0
    assert parse_fraction("0.25", "x") == 0.25
    with pytest.raises(ValueError, match="x"):
        parse_fraction("0", "x")


def test_good_requests_goodput_and_gate():
    slo = Slo.parse("ttft=500ms,tpot=50ms,attainment=60%")
    fast = rec(0.2, 0.29, 4)          # tpot 30 ms
    slow_start = rec(0.6, 0.69, 4)    # ttft 600 ms
    slow_tokens = rec(0.2, 0.5, 4)    # tpot 100 ms
    failed = rec(0.1, 0.2, 4, error="HTTP 500: x")
    assert [slo.is_good(r) for r in (fast, slow_start, slow_tokens, failed)] == [
        True, False, False, False]
    result = evaluate(slo, [fast, fast, slow_start, failed], window_s=2.0)
    assert (result.good, result.total) == (2, 4)
    assert result.attainment == 0.5 and result.goodput == 1.0 and not result.passed
    assert evaluate(slo, [fast, fast, slow_start], 1.0).passed
    assert not evaluate(slo, [], 1.0).passed


def test_itl_limit_is_the_largest_gap_and_missing_metrics_fail():
    slo = Slo.parse("itl=100ms,attainment=100%")
    assert slo.is_good(rec(0.1, 0.3, 3, chunks=(0.1, 0.2, 0.3)))
    assert not slo.is_good(rec(0.1, 0.35, 3, chunks=(0.1, 0.15, 0.35)))
    one_token = RequestRecord("r", "t", 0.0, 0.1, streamed=True, chunk_times=(0.1,),
                              output_tokens=1)
    assert slo.is_good(one_token)  # nothing to wait for after the first chunk
    not_streamed = RequestRecord("r", "t", 0.0, 0.3, streamed=False, chunk_times=(0.3,),
                                 output_tokens=3)
    assert not slo.is_good(not_streamed)  # its gaps are unknown
    assert not Slo.parse("ttft=1s").is_good(not_streamed)
    assert Slo.parse("e2e=1s").is_good(not_streamed)
