"""The engine's thread count: the ceiling from the affinity mask and the cgroup CPU quota (fake
cgroup trees for v1 and v2), and the governor's decisions from step times it is given (a fake
clock and idle counter). The real effect is measured by ``tritonllm bench serving
--neighbours``, not here."""

from __future__ import annotations

import os

from tritonllm.engine import threads
from tritonllm.engine.threads import ThreadBudget, ThreadGovernor, thread_budget

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


class Machine:
    """A fake clock and idle counter, and steps whose time depends on the thread count."""

    def __init__(self, step_s: dict[int, float], idle_cores: float = 0.0):
        self.now, self.idle, self.step_s, self.idle_cores = 0.0, 0.0, step_s, idle_cores

    def run(self, governor: ThreadGovernor, seconds: float) -> list[int]:
        """Steps for ``seconds``; the thread counts the governor chose, one per step."""
        used, end = [], self.now + seconds
        while self.now < end:
            count = governor.threads()
            step = self.step_s[count]
            self.now += step
            self.idle += self.idle_cores * step
            governor.record(step, tokens=8)
            used.append(count)
        return used


def governor_on(machine: Machine, limit: int = 2) -> ThreadGovernor:
    return ThreadGovernor(ThreadBudget(limit, True, "test"), idle=lambda: machine.idle,
                          clock=lambda: machine.now)


def test_on_a_quiet_machine_it_keeps_the_faster_count_and_rarely_checks_the_other():
    machine = Machine({1: 0.030, 2: 0.018})
    governor = governor_on(machine)
    used = machine.run(governor, 120)
    assert used[-1] == 2
    assert used.count(1) / len(used) < 0.05  # a periodic check, not a drift to one thread


def test_a_neighbour_arriving_costs_a_thread_and_leaving_gives_it_back():
    machine = Machine({1: 0.030, 2: 0.018})
    governor = governor_on(machine)
    machine.run(governor, 5)
    machine.step_s = {1: 0.035, 2: 0.400}  # a busy process on one of the two cores
    assert machine.run(governor, 10)[-1] == 1
    machine.step_s, machine.idle_cores = {1: 0.030, 2: 0.018}, 1.0  # it left: a core idles
    assert machine.run(governor, 5)[-1] == 2


def test_a_slow_probe_is_abandoned_after_the_steps_it_took():
    machine = Machine({1: 0.035, 2: 2.0})  # at two threads a step takes seconds
    governor = governor_on(machine)
    used = machine.run(governor, 60)
    assert used[-1] == 1
    assert used.count(2) <= 2 + 60 / threads.PROBE_EVERY_S  # one slow window, and periodic ones


def test_short_windows_and_prefill_steps_decide_nothing():
    machine = Machine({1: 0.030, 2: 0.018})
    governor = governor_on(machine)
    for _ in range(100):
        machine.now += 0.1
        governor.record(5.0, tokens=512)  # a long prompt chunk: not timed
        assert governor.threads() == 2
    assert governor.changes == 0


def test_a_fixed_count_never_changes():
    machine = Machine({3: 1.0})
    governor = ThreadGovernor(ThreadBudget(3, False, "fixed"), idle=lambda: 0.0,
                              clock=lambda: machine.now)
    assert set(machine.run(governor, 30)) == {3}
