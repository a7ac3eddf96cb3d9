"""A probe's verdict from request records: attainment, goodput per offered request/s, and the
share of requests that broke each limit (what binds)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tritonllm.loadtest.metrics import RequestRecord
from tritonllm.loadtest.slo import Slo
from tritonllm.tune.probe import FAILED, Probe, from_records

WORKLOADS = Path(__file__).resolve().parents[2] / "loadtest" / "workloads"


def _record(i: int, chunks: tuple[float, ...], error: str | None = None) -> RequestRecord:
    end = chunks[-1] if chunks else 1.0
    return RequestRecord(request_id=str(i), user="t", start=1000.0 + i, end=end, streamed=True,
                         chunk_times=chunks, chunk_tokens=(1,) * len(chunks),
                         input_tokens=8, output_tokens=len(chunks), error=error)


def test_probe_counts_what_each_limit_broke():
    records = [_record(0, (0.2, 0.3, 0.4)), _record(1, (0.1, 0.2, 0.3, 0.4)),
               _record(2, (1.5, 1.6)), _record(3, (1.2, 1.3)),
               _record(4, (0.1, 0.6)), _record(5, (), error="HTTP 500: boom")]
    probe = from_records(records, Slo.parse("ttft=1s,itl=300ms,attainment=50%"), rate=3.0)
    assert probe.attainment == pytest.approx(2 / 6) and not probe.passed
    assert probe.goodput == pytest.approx(3.0 * 2 / 6)
    assert probe.good_token_rate == pytest.approx(probe.goodput * 3.5)  # good: 3 and 4 tokens
    assert probe.broken == pytest.approx({"ttft": 2 / 6, "itl": 1 / 6, FAILED: 1 / 6})
    assert probe.binding == "ttft" and probe.requests == 6
    assert Probe.from_dict(probe.to_dict()) == probe


def test_a_clean_probe_has_nothing_binding():
    probe = from_records([_record(0, (0.2, 0.3))], Slo.parse("ttft=1s"), rate=1.0)
    assert probe.passed and probe.binding is None and probe.goodput == 1.0


def test_each_run_draws_prompts_of_its_own_and_a_prompt_file_is_sent_as_it_is():
    from tritonllm.tune.measure import _seed, fresh_workload

    mixed = str(WORKLOADS / "mixed.yaml")
    first = fresh_workload(mixed, _seed("search-r2"), requests=100)
    again = fresh_workload(mixed, _seed("search-r2"), requests=100)
    other = fresh_workload(mixed, _seed("search-r4"), requests=10)
    assert first == again and first.seed != other.seed  # the same run name: the same prompts
    assert first.num_prompts == 400 and other.num_prompts == 128  # the file's 128 at least
    assert (first.input_tokens, first.output_tokens_stddev) == (32, 40)
    assert fresh_workload(str(WORKLOADS / "prompts.yaml"), 1, requests=10) is None
