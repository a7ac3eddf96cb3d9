"""The tuner's search on a fake measurement: a deterministic model of a server whose capacity
depends on the profile, so the rate search, the descent, the budget, the journal (resumption)
and the report can be checked exactly, without minutes of load tests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tritonllm.build.profile import load_profile
from tritonllm.tune.journal import Journal
from tritonllm.tune.probe import Probe
from tritonllm.tune.rate_search import RateSearch, find_max_rate
from tritonllm.tune.report import pareto_front, write_report
from tritonllm.tune.search import Tuner
from tritonllm.tune.space import (Dimension, candidate_profile, default_space, parse_space,
                                  rebuild_stages)

SPACE = [Dimension("limits.max_batch_size", (4, 16)),
         Dimension("serving.stream_interval", (2, 4)),
         Dimension("serving.max_queue_size", (8,))]


def capacity(profile) -> float:
    """The fake server's highest rate within the SLO: batch 16 helps, stream_interval 2 helps
    a little, 4 hurts (its chunks break the ITL limit), the queue size does nothing."""
    cap = 2.0 * {4: 0.6, 8: 1.0, 16: 1.5}[profile.limits.max_batch_size]
    return cap * {1: 1.0, 2: 1.1, 4: 0.5}[profile.serving.stream_interval]


class FakeMeasurer:
    """Probes pass below the profile's capacity; goodput is the rate (times 0.95) when they
    pass. Each probe takes 10 s, a server start 5 s more."""

    def __init__(self) -> None:
        self.profile = None
        self.starts = 0
        self.probes = 0
        self._fresh = False

    def start(self, profile) -> None:
        if profile.limits.max_batch_size == 4 and profile.serving.stream_interval == 4:
            raise ValueError("refused on purpose")
        self.profile, self._fresh = profile, True
        self.starts += 1

    def probe(self, rate: float, tag: str) -> Probe:
        self.probes += 1
        cap = capacity(self.profile)
        passed = rate <= cap
        seconds = 10.0 + (5.0 if self._fresh else 0.0)
        self._fresh = False
        broken = {"ttft": 0.0 if passed else 0.4, "itl": 0.0, "failed": 0.0}
        if self.profile.serving.stream_interval == 4 and not passed:
            broken = {"ttft": 0.1, "itl": 0.6, "failed": 0.0}
        return Probe(rate=rate, passed=passed, goodput=rate * (0.95 if passed else 0.5),
                     good_token_rate=rate * 60, attainment=0.95 if passed else 0.5,
                     requests=int(rate * 10), p95_ms={"ttft": 100 * rate / cap, "itl": 50.0},
                     broken=broken, seconds=seconds)

    def stop(self) -> None:
        self.profile = None


CPU_PROFILE = Path(__file__).resolve().parents[2] / "build" / "smollm2-cpu.yaml"


@pytest.fixture
def base():
    return load_profile(CPU_PROFILE)


def _tuner(base, measurer, journal, budget_s=10_000.0, **kwargs):
    return Tuner(base, SPACE, measurer, journal, budget_s=budget_s, log=lambda _: None,
                 **kwargs)


def test_rate_search_brackets_then_bisects():
    def measure(rate):
        return Probe(rate, rate <= 3.3, rate, 0.0, 1.0, 1)

    result = find_max_rate(measure, RateSearch(start=1.0, precision=0.15, max_probes=8))
    rates = [p.rate for p in result.probes]
    assert rates[:3] == [1.0, 2.0, 4.0]  # x2 until the first failure
    assert 3.3 / 1.15 <= result.max_rate <= 3.3 and result.above.rate / result.max_rate <= 1.15
    low = find_max_rate(measure, RateSearch(start=10.0))
    assert [p.rate for p in low.probes][:3] == [10.0, 5.0, 2.5]  # halving until one passes
    never = find_max_rate(lambda r: Probe(r, False, 0.0, 0.0, 0.0, 1), RateSearch(min_rate=0.3))
    assert never.best is None and [p.rate for p in never.probes] == [1.0, 0.5]  # 0.25 < min


def test_descent_adopts_what_helps_and_explains_it(base, tmp_path):
    measurer = FakeMeasurer()
    result = _tuner(base, measurer, Journal(tmp_path / "j.jsonl", {"s": 1})).run()
    winner = result.winner
    assert winner.overrides == {"limits.max_batch_size": 16, "serving.stream_interval": 2}
    assert winner.stages == ("engine",) and result.base.stages == ()
    assert len(result.log) == 2 and result.log[0].startswith("limits.max_batch_size: default ->")
    by_label = {c.label: c for c in result.candidates}
    assert by_label["max_batch_size=16 stream_interval=4"].search.above.binding == "itl"
    assert by_label["max_batch_size=16 max_queue_size=8 stream_interval=2"].goodput == \
        pytest.approx(winner.goodput, rel=0.2)  # no gain beyond min_gain: not adopted
    assert winner.goodput / result.base.goodput > 1.5
    assert len(winner.goodputs) == 2 and len(result.base.goodputs) == 2  # re-measured


def test_budget_stops_the_descent_and_keeps_the_reserve(base, tmp_path):
    measurer = FakeMeasurer()
    result = _tuner(base, measurer, Journal(tmp_path / "j.jsonl", {"s": 1}),
                    budget_s=200.0).run()
    searched = [c for c in result.candidates if c.search]
    assert 1 <= len(searched) < 4
    assert result.used_s <= 200.0 + 60.0  # the finalists' re-runs come out of the reserve


def test_an_interrupted_run_resumes_from_the_journal(base, tmp_path):
    full = _tuner(base, FakeMeasurer(), Journal(tmp_path / "full.jsonl", {"s": 1})).run()

    class Interrupt(Exception):
        pass

    class Dying(FakeMeasurer):
        def probe(self, rate, tag):
            if self.probes == 7:
                raise Interrupt
            return super().probe(rate, tag)

    path = tmp_path / "resumed.jsonl"
    with pytest.raises(Interrupt):
        _tuner(base, Dying(), Journal(path, {"s": 1})).run()
    assert len(path.read_text().splitlines()) == 1 + 7
    second = FakeMeasurer()
    resumed = _tuner(base, second, Journal(path, {"s": 1})).run()
    assert second.probes == sum(len(c.search.probes) + len(c.repeats)
                                for c in full.candidates if c.search) - 7
    assert resumed.winner.overrides == full.winner.overrides
    assert resumed.used_s == full.used_s + 5.0  # the interrupted candidate started again
    with pytest.raises(ValueError, match="other settings .*s differ.*--fresh"):
        Journal(path, {"s": 2})


def test_a_refused_candidate_is_reported_and_skipped(base, tmp_path):
    space = [Dimension("limits.max_batch_size", (4,)), Dimension("serving.stream_interval", (4,))]
    tuner = Tuner(base, space, FakeMeasurer(), Journal(tmp_path / "j.jsonl", {}),
                  budget_s=10_000, log=lambda _: None)
    tuner.evaluate({})
    refused = tuner.evaluate({"limits.max_batch_size": 4, "serving.stream_interval": 4})
    assert refused.error == "refused on purpose" and refused.goodput == 0.0
    bad = tuner.evaluate({"limits.max_batch_size": 0})
    assert "limits.max_batch_size: must be >= 1" in bad.error


def test_report_and_the_winning_profile_round_trip(base, tmp_path):
    result = _tuner(base, FakeMeasurer(), Journal(tmp_path / "j.jsonl", {"s": 1})).run()
    path = write_report(result, base, tmp_path, ["ttft", "itl"], "header", {"s": 1})
    assert path.name == "smollm2-cpu-tuned.yaml"
    written = load_profile(path)
    expected = candidate_profile(base, result.winner.overrides)
    assert written.to_dict() == {**expected.to_dict(), "name": "smollm2-cpu-tuned"}
    table = (tmp_path / "tune.md").read_text()
    assert "| 1 | max_batch_size=16 stream_interval=2 | rebuild: engine |" in table
    assert "x the base profile's" in table
    doc = json.loads((tmp_path / "tune.json").read_text())
    assert doc["ranking"][0]["overrides"] == result.winner.overrides
    assert (tmp_path / "pareto.png").stat().st_size > 10_000
    assert yaml.safe_load(path.read_text())["limits"]["max_batch_size"] == 16


def test_pareto_front():
    points = [(100, 1.0), (200, 3.0), (150, 0.5), (300, 2.0), (250, 3.5)]
    assert pareto_front(points) == [(100, 1.0), (200, 3.0), (250, 3.5)]


def test_space_helpers(base):
    assert [d.key for d in default_space()][0].startswith("serving.")
    assert default_space(include_rebuild=True)[0].key == "quantization.mode"
    dims = parse_space("limits.max_batch_size=8|16, serving.enable_chunked_context=true|false")
    assert dims[0].values == (8, 16) and dims[1].values == (True, False)
    with pytest.raises(ValueError, match="not section.key=v1"):
        parse_space("limits.max_batch_size")
    assert rebuild_stages(base, candidate_profile(base, {"serving.stream_interval": 4})) == ()
    assert rebuild_stages(base, candidate_profile(base, {"quantization.mode": "int8_wo"})) == \
        ("quantize", "engine")


def test_when_nothing_meets_the_slo_no_profile_is_written(base, tmp_path):
    class Hopeless(FakeMeasurer):
        def probe(self, rate, tag):
            probe = super().probe(rate, tag)
            return Probe(rate=rate, passed=False, goodput=0.0, good_token_rate=0.0,
                         attainment=0.0, requests=probe.requests, broken={"ttft": 1.0},
                         seconds=probe.seconds)

    result = _tuner(base, Hopeless(), Journal(tmp_path / "j.jsonl", {"s": 1}),
                    budget_s=100.0).run()
    assert write_report(result, base, tmp_path, ["ttft"], "header", {}) is None
    assert "No candidate met the SLO" in (tmp_path / "tune.md").read_text()
    assert not list(tmp_path.glob("*-tuned.yaml"))


def test_a_gain_within_the_noise_margin_keeps_the_base_profile(base, tmp_path):
    class Flat(FakeMeasurer):
        def probe(self, rate, tag):  # batch 16 is 3 % better: less than min_gain
            probe = super().probe(rate, tag)
            gain = 1.03 if self.profile.limits.max_batch_size == 16 else 1.0
            return Probe(rate=rate, passed=rate <= 2.0, goodput=min(rate, 2.0) * gain,
                         good_token_rate=0.0, attainment=1.0, requests=probe.requests,
                         seconds=probe.seconds)

    space = [Dimension("limits.max_batch_size", (16,))]
    result = Tuner(base, space, Flat(), Journal(tmp_path / "j.jsonl", {}), budget_s=10_000,
                   log=lambda _: None).run()
    assert result.winner is result.base
    assert "the base profile stays" in result.log[-1]
