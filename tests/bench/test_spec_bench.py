"""The speculation benchmark on the tiniest run: both workloads, one request each, and the
report says whether greedy outputs stayed identical (the exit status)."""

import argparse

from tritonllm.bench import spec_bench
from tritonllm.bench.workload import GROUNDED_OUTPUT_LENGTHS, grounded_workload
from tritonllm.engine import EngineConfig


def test_grounded_items_quote_a_given_text_with_exact_lengths():
    items = grounded_workload(4)
    assert [i.output_tokens for i in items] == list(GROUNDED_OUTPUT_LENGTHS) * 2
    assert all("\n\n" in i.prompt for i in items)  # the task, then the given text


def test_one_round_runs_and_keeps_greedy_outputs_identical(capsys):
    parser = argparse.ArgumentParser()
    spec_bench.add_arguments(parser)
    args = parser.parse_args(["--requests", "1", "--rounds", "1", "--concurrency", "1",
                              "--num-threads", "1"])
    assert spec_bench.run(args) == 0
    out = capsys.readouterr().out
    assert "input-grounded, c=1:" in out and "mixed, c=1:" in out
    assert "identical greedy outputs 1 of 1" in out


def test_a_draft_model_run_names_its_mode(capsys):
    from tritonllm.model_source import default_model_dir

    parser = argparse.ArgumentParser()
    spec_bench.add_arguments(parser)
    args = parser.parse_args(["--requests", "1", "--rounds", "1", "--concurrency", "1",
                              "--num-threads", "1", "--speculative-decoding-mode",
                              "draft_target", "--speculative-model-dir",
                              str(default_model_dir())])  # the target drafts for itself
    assert spec_bench.run(args) == 0
    out = capsys.readouterr().out
    draft_len = EngineConfig.max_draft_len
    assert f"draft_target: max_draft_len {draft_len}" in out and "mixed, c=1: off" in out
    assert ", draft_target " in out and "identical greedy outputs 1 of 1" in out
