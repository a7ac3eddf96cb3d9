"""The long-prompt workload: documents sized in the served model's tokens, each its own from the
first token (no prefix-cache hit between requests), and the prefill table read from a run's
TTFTs; and the serving benchmark's refusals of settings the workload cannot run under."""

import argparse

import pytest

from tritonllm.bench import serving_bench
from tritonllm.bench.engine_bench import RunResult
from tritonllm.bench.workload import LONG_OUTPUT_TOKENS, WorkItem, long_prompt_workload


def test_prompts_fill_their_token_budget_and_differ_from_the_first_token(codec):
    items = long_prompt_workload(codec.encode, 4, lengths=(100, 400))
    assert [i.output_tokens for i in items] == [LONG_OUTPUT_TOKENS] * 4
    for item, target in zip(items, (100, 400, 100, 400)):
        assert item.prompt_tokens == len(codec.encode(item.prompt))
        assert target - 3 <= item.prompt_tokens <= target  # whole words: a token or two short
        assert item.prompt.endswith("Answer in one sentence.")
    firsts = [codec.encode(item.prompt)[:3] for item in items]
    assert len({tuple(f) for f in firsts}) == 4
    assert long_prompt_workload(codec.encode, 4, lengths=(100, 400)) == items


def test_the_prefill_table_takes_the_median_per_length_and_divides_tokens_by_it():
    items = [WorkItem(i, "p", 32, n) for i, n in enumerate((1000, 3998, 1000, 4000, 1000))]
    run = RunResult("x", 160, 10.0, ttft_ms=[100.0, 1000.0, 300.0, 2000.0, 200.0])
    table = serving_bench.format_prefill(items, {"ours": run}, lengths=(1000, 4000))
    row = table.splitlines()[-1]
    # 1000: TTFTs 100/300/200 -> 200 ms, rates 10000/3333/5000 -> 5000 tok/s; 4000: a prompt
    # two tokens short counts as 4000, TTFT median of 1000/2000, rate median of 3998/2000
    assert row.startswith("ours") and "200 (5000)" in row and "1500 (2999)" in row
    assert "1000 tokens" in table and "4000 tokens" in table and "3998" not in table


@pytest.mark.parametrize("extra, message", [
    (["--concurrency", "1", "8"], "runs at --concurrency 1, one round"),
    (["--concurrency", "1", "--rounds", "2"], "runs at --concurrency 1, one round"),
    (["--concurrency", "1"], "prompts of 4096 tokens exceed --max-input-len 2048"),
])
def test_the_long_prompt_workload_refuses_what_it_cannot_measure(extra, message):
    parser = argparse.ArgumentParser()
    serving_bench.add_arguments(parser)
    args = parser.parse_args(["--workload", "long-prompt", *extra])
    with pytest.raises(ValueError, match=message):
        serving_bench.run(args)
