"""The engine benchmark's pieces (tritonllm.bench): workload, closed-loop runner, report.

(They live beside the engine tests because the benchmark drives the engine; no timing is
asserted: the benchmark prints figures.)
"""

from __future__ import annotations

import pytest
from tests.engine.engine_helpers import tiny_engine

from tritonllm.bench.engine_bench import RunResult, engine_run, format_table, percentile
from tritonllm.bench.workload import OUTPUT_LENGTHS, PROMPTS, mixed_workload


class Counter:
    def __init__(self):
        self.count = 0

    def update(self, n):
        self.count += n


def test_workload_cycles_prompts_and_lengths():
    items = mixed_workload(20)
    assert [i.output_tokens for i in items[:8]] == [16, 32, 64, 128] * 2
    assert items[17].prompt == PROMPTS[1] and items[17].output_tokens == OUTPUT_LENGTHS[1]
    assert sum(i.output_tokens for i in mixed_workload()) == 960
    with pytest.raises(ValueError, match="num_requests: must be >= 1"):
        mixed_workload(0)


def test_closed_loop_counts_every_token_and_latency(tiny_model):
    items = [item.__class__(item.index, item.prompt, item.output_tokens // 8)
             for item in mixed_workload(6)]  # 2, 4, 8, 16, 2, 4 tokens
    prompts = [[3 + i, 40, 41 + i] for i in range(len(items))]
    engine = tiny_engine(tiny_model, max_batch_size=4)
    progress = Counter()
    try:
        result = engine_run(engine, prompts, items, concurrency=3, progress=progress)
        stats = engine.stats()
    finally:
        engine.shutdown()
    assert progress.count == 6 and result.output_tokens == 36
    assert stats.generated_tokens == 36 and stats.max_running_seen == 3
    assert len(result.ttft_ms) == 6 and len(result.itl_ms) == 36 - 6
    assert result.name == "engine, concurrency 3" and result.tokens_per_s > 0


def test_report_table_and_percentiles():
    assert percentile([4.0, 1.0, 3.0, 2.0], 50) == 2.5 and percentile([], 50) is None
    assert percentile([1.0, 2.0, 3.0], 100) == 3.0
    results = [RunResult("transformers sequential generate", 100, 10.0),
               RunResult("transformers static batches of 8", 100, 5.0),
               RunResult("engine, concurrency 8", 100, 1.0, [10.0, 30.0], [5.0, 7.0])]
    lines = format_table(results).splitlines()
    assert lines[2].split()[-4:] == ["1.00x", "0.50x", "-", "-"]
    assert lines[4].split()[-5:] == ["100.0", "10.00x", "5.00x", "20/30", "6/7"]
