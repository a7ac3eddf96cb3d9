"""Metric definitions on hand-made timestamp traces with answers worked out by hand."""

import pytest

from tritonllm.loadtest.metrics import Distribution, RequestRecord, summarize


def streamed(start=1000.0, chunks=(0.2, 0.3, 0.45, 0.5), end=0.5, out=4, inp=10, error=None,
             rid="r"):
    return RequestRecord(request_id=rid, user="t", start=start, end=end, streamed=True,
                         chunk_times=tuple(chunks), input_tokens=inp, output_tokens=out,
                         error=error)


def test_per_request_metrics_of_a_known_trace():
    r = streamed()
    assert r.ttft == pytest.approx(0.2)
    assert r.tt2t == pytest.approx(0.1)
    assert r.itl == pytest.approx((0.1, 0.15, 0.05))
    # (E2E - TTFT) / (out - 1) = (0.5 - 0.2) / 3
    assert r.tpot == pytest.approx(0.1)
    assert r.e2e == 0.5


def test_tpot_counts_server_tokens_not_chunks():
    # 2 chunks but the server reports 7 tokens (several tokens per chunk).
    r = streamed(chunks=(0.1, 0.7), end=0.7, out=7)
    assert r.tpot == pytest.approx(0.6 / 6)
    assert r.itl == pytest.approx((0.6,))


def test_undefined_metrics_are_none():
    one_token = streamed(chunks=(0.1,), end=0.1, out=1)
    assert one_token.tt2t is None and one_token.tpot is None and one_token.itl == ()
    plain = RequestRecord("r", "t", 0.0, 0.9, streamed=False, chunk_times=(0.9,), output_tokens=5)
    assert plain.ttft is None and plain.tpot is None and plain.itl == ()
    assert plain.e2e == 0.9


def test_record_rejects_impossible_traces():
    with pytest.raises(ValueError, match="chunk_times"):
        streamed(chunks=(0.3, 0.2), end=0.5)
    with pytest.raises(ValueError, match="chunk_times"):
        streamed(chunks=(0.2, 0.6), end=0.5)
    with pytest.raises(ValueError, match="end"):
        streamed(chunks=(), end=-1.0)


def test_wire_round_trip():
    r = streamed(error="HTTP 500: boom")
    assert RequestRecord.from_wire(r.to_wire()) == r


def test_distribution_percentiles_interpolate_linearly():
    d = Distribution.of([1, 2, 3, 4, 5, 6, 7, 8, 9, 10])
    assert (d.count, d.mean, d.min, d.max) == (10, 5.5, 1, 10)
    # numpy linear: rank = q/100 * (n - 1)
    assert d.p50 == pytest.approx(5.5)
    assert d.p90 == pytest.approx(9.1)
    assert d.p99 == pytest.approx(9.91)
    assert Distribution.of([]) == Distribution(count=0)
    assert Distribution.of([0.25, None], 1000.0).max == 250.0


def test_summary_window_throughput_and_pooled_itl():
    a = streamed(start=100.0, chunks=(0.2, 0.3, 0.45, 0.5), end=0.5, out=4)   # ends 100.5
    b = streamed(start=100.5, chunks=(0.5, 1.5), end=1.5, out=2)             # ends 102.0
    failed = streamed(start=101.0, chunks=(), end=0.2, out=None, error="HTTP 500: x")
    s = summarize([a, b, failed])
    assert (s.requests, s.succeeded, s.failed) == (3, 2, 1)
    assert s.errors == {"HTTP 500: x": 1}
    assert s.window_s == pytest.approx(2.0)             # 100.0 -> 102.0
    assert s.request_throughput == pytest.approx(1.0)   # 2 ok / 2 s
    assert s.output_token_throughput == pytest.approx(3.0)  # 6 tokens / 2 s
    itl = s.latency_ms["itl"]                           # gaps 100, 150, 50 and 1000 ms, pooled
    assert itl.count == 4 and itl.mean == pytest.approx(325.0) and itl.max == pytest.approx(1000)
    assert s.latency_ms["ttft"].mean == pytest.approx(350.0)
    assert s.latency_ms["tpot"].max == pytest.approx(1000.0)  # b: (1.5 - 0.5) / 1
    assert s.tokens["output"].mean == 3.0


def test_summary_of_nothing():
    s = summarize([])
    assert s.requests == 0 and s.window_s == 0 and s.request_throughput == 0
    assert s.latency_ms["e2e"].count == 0


def test_busy_refusals_are_counted_apart_from_errors():
    records = [
        RequestRecord("a", "t", 0.0, 0.5, streamed=False, chunk_times=(0.5,), output_tokens=4),
        RequestRecord("b", "t", 0.0, 0.1, streamed=False, error="HTTP 503: busy"),
        RequestRecord("c", "t", 0.0, 0.1, streamed=False,
                      error="HTTP 400: in ensemble 'ensemble', max_queue_size: server busy, 8"),
        RequestRecord("d", "t", 0.0, 0.1, streamed=False, error="HTTP 400: max_tokens: must be"),
    ]
    summary = summarize(records)
    assert (summary.succeeded, summary.failed, summary.rejected) == (1, 1, 2)
    assert list(summary.errors) == ["HTTP 400: max_tokens: must be"]
