"""The busy-machine pieces of the serving benchmark: neighbours that really take a core and go
away, CPU lists, servers started on fewer CPUs, and the contended/quiet table."""

from __future__ import annotations

import os

import pytest

from tritonllm.bench import contention
from tritonllm.bench.engine_bench import RunResult
from tritonllm.serve import procfs


def test_neighbours_run_during_the_block_and_are_gone_after():
    with contention.busy_neighbours(2) as procs:
        assert all(proc.poll() is None for proc in procs)
        state = procfs.state_and_parent(procs[0].pid)
        assert state is not None and state[0] == "R"  # spinning, not sleeping
    assert all(proc.poll() is not None for proc in procs)


def test_contended_runs_are_named_and_keep_their_figures():
    quiet = RunResult("ours, concurrency 1", 100, 2.0, [10.0], [5.0])
    run = contention.contended(lambda level: quiet, 1)
    result = run(1)
    assert result.name == "ours, concurrency 1 +1 busy"
    assert (result.output_tokens, result.seconds) == (100, 2.0)
    assert contention.contended_label("ours", 1) == "ours +1 busy"


@pytest.mark.parametrize("text,expected", [("0", {0}), ("0-1", {0, 1}), ("0,1", {0, 1}),
                                           (None, None), ("", None)])
def test_cpu_lists(text, expected):
    if expected and not expected <= os.sched_getaffinity(0):
        pytest.skip("fewer CPUs here")
    assert contention.parse_cpus(text) == expected


def test_bad_cpu_lists_name_the_option():
    with pytest.raises(ValueError, match="--server-cpus: expected"):
        contention.parse_cpus("a-b")
    with pytest.raises(ValueError, match="not among this process's CPUs"):
        contention.parse_cpus("4096")


def test_children_inherit_the_cpu_set_and_the_parent_gets_its_own_back():
    import subprocess
    import sys

    mine = os.sched_getaffinity(0)
    first = min(mine)
    with contention.children_on({first}):
        child = subprocess.run([sys.executable, "-c", "import os; print(sorted("
                                "os.sched_getaffinity(0)))"], capture_output=True, text=True)
    assert child.stdout.strip() == f"[{first}]"
    assert os.sched_getaffinity(0) == mine


def test_the_table_shows_the_ratio_per_target_and_level():
    quiet = {"ours": [RunResult("a", 100, 2.0, [40.0]), RunResult("b", 400, 2.0, [50.0])]}
    busy = {"ours": [RunResult("a", 50, 2.0, [60.0]), RunResult("b", 100, 2.0, [90.0])]}
    table = contention.format_contention(quiet, busy, [1, 8], 1)
    lines = table.splitlines()
    assert "+1 busy" in lines[0]
    assert lines[2].split()[:5] == ["ours", "1", "50.0", "25.0", "0.50x"]
    assert lines[3].split()[:5] == ["ours", "8", "200.0", "50.0", "0.25x"]
