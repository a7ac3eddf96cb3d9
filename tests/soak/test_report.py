"""The soak's report and CLI without a server: windows, RSS growth, the pass criteria, options."""

from __future__ import annotations

from pathlib import Path

from tritonllm.cli import build_parser
from tritonllm.soak.cli import _config
from tritonllm.soak.report import markdown, summarize, write
from tritonllm.soak.runner import Samples, SoakConfig, SoakRun
from tritonllm.soak.tally import Record, Tally

MB = 1 << 20


def _run(rss_end_mb: float, *, kv_full: bool = True, lost: bool = False) -> SoakRun:
    tally = Tally()
    for i, outcome in enumerate(["completed"] * 4 + ["abandoned"]):
        tally.sent()
        tally.add(Record("k", 4.0 * i, 0.1 * (i + 1), outcome))
    if lost:
        tally.sent()
    points = [(0.0, 100 * MB), (6.0, 100 * MB), (30.0, int(rss_end_mb * MB))]
    samples = Samples(pid=1, points=points)
    config = SoakConfig(duration_s=20, window_s=10, warmup_s=5)
    return SoakRun(config, tally.totals(), tally.by_kind(), tally.records, samples,
                   {"completed": 0}, {"free_kv_tokens": 8.0, "total_kv_tokens": 8.0}, kv_full,
                   0, 21.0)


def test_windows_cover_the_duration_and_take_percentiles_of_completed_requests():
    windows = summarize(_run(100))["windows"]
    assert [(w["start_s"], w["sent"], w["completed"]) for w in windows] == [(0, 3, 3), (10, 2, 1)]
    assert windows[1]["p50_ms"] == 400.0


def test_each_failed_check_fails_the_soak():
    assert summarize(_run(104))["passed"]
    assert summarize(_run(104))["rss"]["growth"] == 0.04
    for run in (_run(106), _run(100, kv_full=False), _run(100, lost=True)):
        assert not summarize(run)["passed"]
    assert "FAIL: lost == 0" in markdown(summarize(_run(100, lost=True)))


def test_files_are_written(tmp_path: Path):
    run = _run(100)
    paths = write(summarize(run), run, tmp_path)
    assert [p.name for p in paths] == ["soak.json", "soak.md", "soak.png"]


def test_options_map_onto_the_config():
    args = build_parser().parse_args(["soak", "--seconds", "20", "--openai-url", "",
                                      "--concurrency", "4", "--metrics-url", "h:1",
                                      "--neighbours", "1"])
    config = _config(args)
    assert (config.duration_s, config.openai, config.concurrency) == (20, None, 4)
    assert config.neighbours == 1
    assert config.metrics == "http://h:1/metrics"
    assert _config(build_parser().parse_args(["soak", "--minutes", "2"])).duration_s == 120
