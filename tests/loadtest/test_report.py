"""Reports, compare and sweep tables from hand-made records."""

import json

import pytest

from tritonllm.loadtest.compare import markdown as compare_markdown
from tritonllm.loadtest.compare import regressions
from tritonllm.loadtest.metrics import RequestRecord
from tritonllm.loadtest.plots import token_arrivals
from tritonllm.loadtest.report import load_summary, read_samples, write_report
from tritonllm.loadtest.slo import Slo
from tritonllm.loadtest.sweep import parse_values, point, steps, sweep_markdown
from tritonllm.loadtest.runner import LocustRun


def records(scale=1.0, n=6):
    out = []
    for i in range(n):
        ttft = 0.2 * scale
        chunks = tuple(ttft + 0.05 * scale * k for k in range(4))
        out.append(RequestRecord(f"r{i}", "http_stream", 100.0 + i, chunks[-1], True, chunks,
                                 (1, 1, 1, 1), 16, 4))
    out.append(RequestRecord("bad", "http_stream", 103.0, 0.1, True, error="HTTP 400: no"))
    return out


def test_write_report_files_and_content(tmp_path):
    recs = records()
    doc = write_report(recs, {"label": "base", "users": 2}, tmp_path, Slo.parse("ttft=300ms"))
    for name in ("summary.json", "summary.md", "samples.jsonl", "ttft_itl.png",
                 "latency_over_time.png", "throughput_over_time.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    assert load_summary(tmp_path) == json.loads(json.dumps(doc))
    assert doc["summary"]["requests"] == 7 and doc["summary"]["failed"] == 1
    assert doc["slo"]["good"] == 6 and doc["slo"]["passed"] is False  # 6/7 < 90 %
    assert read_samples(tmp_path / "samples.jsonl") == recs
    md = (tmp_path / "summary.md").read_text()
    assert "| TTFT (ms) | 6 | 200.0 |" in md and "1 × HTTP 400: no" in md and "FAILED" in md


def test_token_arrivals_place_tokens_at_chunks_and_leftovers_at_end():
    r = RequestRecord("r", "t", 10.0, 1.0, True, (0.2, 0.5), (1, 2), output_tokens=5)
    times, tokens = token_arrivals([r], t0=10.0)
    assert times.tolist() == [0.2, 0.5, 1.0] and tokens.tolist() == [1, 2, 2]


def test_compare_flags_regressions(tmp_path):
    a = write_report(records(1.0), {"label": "a"}, tmp_path / "a", plots=False)
    b = write_report(records(1.5), {"label": "b"}, tmp_path / "b", plots=False)
    table = compare_markdown(a, b, allowed=0.1)
    assert "| TTFT p50 (ms) | 200.0 | 300.0 | +50.0% **regressed** |" in table
    assert "TTFT p50 (ms)" in regressions(a, b, 0.1)
    assert "TTFT p50 (ms)" not in regressions(a, b, 0.6)
    assert regressions(a, a, 0.0) == []


def test_sweep_steps_table_and_values(tmp_path):
    base = LocustRun(out_dir=str(tmp_path), workload="8/4")
    runs = steps(base, [1, 4], None)
    assert [(label, r.users, r.out_dir) for label, r in runs] == [
        ("u1", 1, str(tmp_path / "step-u1")), ("u4", 4, str(tmp_path / "step-u4"))]
    rate_runs = steps(base, None, [0.5])
    assert rate_runs[0][1].request_rate == 0.5
    with pytest.raises(ValueError, match="exactly one"):
        steps(base, [1], [1.0])
    doc = write_report(records(), {"label": "u1"}, tmp_path / "x", plots=False)
    table = sweep_markdown([point("u1", runs[0][1], doc)])
    assert "| u1 | 1 | closed | 7 | 1 |" in table and "| – |" in table
    assert parse_values("1,2,4", "concurrency", int) == [1, 2, 4]
    with pytest.raises(ValueError, match="rates"):
        parse_values("1,-2", "rates")
