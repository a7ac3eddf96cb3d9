"""The engine's thread count: the ceiling from the affinity mask and the cgroup CPU quota (fake
cgroup trees for v1 and v2), the governor's decisions, and its real signal: run-queue wait that
busy neighbours cause, read from /proc."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from tritonllm.engine import threads
from tritonllm.engine.threads import Sample, ThreadBudget, ThreadGovernor, thread_budget

CPUS = len(os.sched_getaffinity(0))


def cgroup_v2(tmp_path, cpu_max: str | None, parent_max: str | None = None):
    root = tmp_path / "cgroup"
    leaf = root / "kubepods" / "pod1"
    leaf.mkdir(parents=True)
    if cpu_max:
        (leaf / "cpu.max").write_text(cpu_max + "\n")
    if parent_max:
        (root / "kubepods" / "cpu.max").write_text(parent_max + "\n")
    proc = tmp_path / "proc-cgroup"
    proc.write_text("0::/kubepods/pod1\n")
    return root, proc


def test_a_v2_quota_caps_the_threads(tmp_path):
    root, proc = cgroup_v2(tmp_path, "150000 100000")
    assert threads.cpu_quota(root, proc) == 1.5
    budget = thread_budget(0, root, proc)
    assert budget.limit == 1 and budget.adaptive
    assert "CPU quota 1.5" in budget.reason and f"{CPUS} CPUs in the affinity mask" in budget.reason


def test_the_tightest_quota_on_the_path_wins(tmp_path):
    root, proc = cgroup_v2(tmp_path, "max 100000", parent_max="100000 100000")
    assert threads.cpu_quota(root, proc) == 1.0


def test_no_quota_leaves_the_affinity_mask(tmp_path):
    root, proc = cgroup_v2(tmp_path, "max 100000")
    budget = thread_budget(0, root, proc)
    assert (budget.limit, budget.adaptive) == (CPUS, True)
    assert "no CPU quota" in budget.reason


def test_a_v1_cfs_quota(tmp_path):
    base = tmp_path / "cgroup" / "cpu,cpuacct" / "docker" / "abc"
    base.mkdir(parents=True)
    (base / "cpu.cfs_quota_us").write_text("250000\n")
    (base / "cpu.cfs_period_us").write_text("100000\n")
    proc = tmp_path / "proc-cgroup"
    proc.write_text("4:memory:/docker/abc\n2:cpu,cpuacct:/docker/abc\n")
    assert threads.cpu_quota(tmp_path / "cgroup", proc) == 2.5


def test_a_requested_count_is_fixed():
    budget = thread_budget(3)
    assert (budget.limit, budget.adaptive) == (3, False)
    assert ThreadGovernor(budget).threads() == 3


class FakeCounters:
    def __init__(self):
        self.now = Sample(0.0, 0.0, 0.0)

    def advance(self, seconds: float, waited_cores: float, idle_cores: float) -> None:
        n = self.now
        self.now = Sample(n.wall + seconds, n.waited + waited_cores * seconds,
                          n.idle + idle_cores * seconds)


def test_the_governor_drops_a_thread_for_lost_time_and_takes_it_back_when_idle():
    counters = FakeCounters()
    governor = ThreadGovernor(ThreadBudget(2, True, "test"), sample=lambda: counters.now,
                              clock=lambda: counters.now.wall)
    assert governor.threads() == 2
    counters.advance(0.2, waited_cores=0.9, idle_cores=0.0)
    assert governor.threads() == 2  # within the window: no decision yet
    counters.advance(0.4, waited_cores=0.9, idle_cores=0.0)
    assert governor.threads() == 1  # a neighbour took a core
    counters.advance(1.0, waited_cores=0.1, idle_cores=0.0)
    assert governor.threads() == 1  # still busy beside us: stay
    counters.advance(1.0, waited_cores=0.0, idle_cores=1.0)
    assert governor.threads() == 2  # it left
    counters.advance(1.0, waited_cores=0.0, idle_cores=1.0)
    assert governor.threads() == 2 and governor.changes == 2  # never above the budget


@pytest.mark.timeout(120)
def test_busy_neighbours_show_as_run_queue_wait_and_cost_a_thread():
    """Real counters: one busy thread here beside a busy process on every allowed CPU."""
    neighbours = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
                  for _ in range(CPUS)]
    try:
        time.sleep(0.3)
        governor = ThreadGovernor(ThreadBudget(2, True, "test"))
        deadline = time.monotonic() + 30
        while governor.current == 2 and time.monotonic() < deadline:
            end = time.monotonic() + 0.05
            while time.monotonic() < end:  # this thread stays runnable, as a step's would
                pass
            governor.threads()
        assert governor.current == 1
    finally:
        for proc in neighbours:
            proc.kill()
            proc.wait()
