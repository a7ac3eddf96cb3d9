"""How many threads the engine's step runs on: at most what the process may use, and fewer
while other processes take the cores. Plain Python (no torch): it reads /proc and cgroup files.

The step splits each layer across OpenMP threads that meet at a barrier a few hundred times per
step. A thread that is descheduled because another process wants its core makes every other
thread wait at the next barrier for a whole scheduler slice, so a step on N threads beside a
busy neighbour can be many times slower than the same step on N - 1 threads. Hence:

- :func:`thread_budget`: the ceiling, from the CPUs in the affinity mask and the cgroup's CPU
  quota (v2 ``cpu.max``, v1 ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``), floor-rounded, at
  least 1; or the count asked for (``num_threads``), which is then fixed.
- :class:`ThreadGovernor`: between 1 and that ceiling, per window of steps. It drops a thread
  when this process's threads spent more than ``LOST_CORES_DOWN`` of a core waiting in the run
  queue (``/proc/self/task/*/schedstat``: time runnable but not running), and adds one back when
  the allowed CPUs were idle for more than ``IDLE_CORES_UP`` of a core (``/proc/stat``).
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

log = logging.getLogger(__name__)

CGROUP_ROOT = Path("/sys/fs/cgroup")
WINDOW_S = 0.5  # a decision per window: long enough to average over scheduler slices
LOST_CORES_DOWN = 0.3  # run-queue wait, in cores, that costs a thread
IDLE_CORES_UP = 0.75  # idle capacity, in cores, that earns one back


@dataclass(frozen=True)
class ThreadBudget:
    """``limit``: most threads the step may use; ``adaptive``: whether the governor may run
    fewer; ``reason``: where the limit comes from, for the start-up line."""

    limit: int
    adaptive: bool
    reason: str


def thread_budget(requested: int = 0, cgroup_root: Path = CGROUP_ROOT,
                  proc_cgroup: Path = Path("/proc/self/cgroup")) -> ThreadBudget:
    """``requested`` > 0 fixes the count (``--num-threads``); 0 derives it from affinity and
    the CPU quota, and lets the governor adapt below it."""
    if requested > 0:
        return ThreadBudget(requested, False, f"{requested} (fixed by num_threads)")
    cpus = available_cores()
    quota = cpu_quota(cgroup_root, proc_cgroup)
    limit = max(1, min(cpus, math.floor(quota))) if quota else cpus
    quota_text = f"CPU quota {quota:g}" if quota else "no CPU quota"
    return ThreadBudget(limit, True, f"up to {limit} ({cpus} CPUs in the affinity mask, "
                                     f"{quota_text}; fewer while other processes take cores)")


def available_cores() -> int:
    """CPU cores this process may run on (respects affinity masks and container cpusets)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def cpu_quota(cgroup_root: Path = CGROUP_ROOT,
              proc_cgroup: Path = Path("/proc/self/cgroup")) -> float | None:
    """CPUs the cgroup may use (quota / period), the tightest along the path; None: no quota."""
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return None
    quotas = []
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":
            quotas += _v2_quotas(cgroup_root, path)
        elif "cpu" in controllers.split(","):
            quotas += _v1_quotas(cgroup_root, controllers, path)
    return min(quotas) if quotas else None


def _v2_quotas(root: Path, path: str) -> list[float]:
    found = []
    for directory in _ancestors(root, path):
        text = _read(directory / "cpu.max")
        if text:
            quota, _, period = text.partition(" ")
            if quota != "max" and period:
                found.append(int(quota) / int(period))
    return found


def _v1_quotas(root: Path, controllers: str, path: str) -> list[float]:
    found = []
    for base in (root / controllers, root / "cpu,cpuacct", root / "cpu"):
        for directory in _ancestors(base, path):
            quota, period = _read(directory / "cpu.cfs_quota_us"), _read(
                directory / "cpu.cfs_period_us")
            if quota and period and int(quota) > 0:
                found.append(int(quota) / int(period))
        if found:
            break
    return found


def _ancestors(base: Path, path: str) -> list[Path]:
    """``base/path`` and each parent up to ``base`` (a container sees its own cgroup as /)."""
    parts = [p for p in path.strip("/").split("/") if p]
    return [base.joinpath(*parts[:n]) for n in range(len(parts), -1, -1)]


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


@dataclass(frozen=True)
class Sample:
    """Cumulative counters at one moment: seconds of wall clock, this process's run-queue wait
    (summed over its threads) and the allowed CPUs' idle time, both in seconds."""

    wall: float
    waited: float
    idle: float


def read_sample(cpus: frozenset[int] | None = None) -> Sample:
    """The counters now (``wall`` from ``time.monotonic``)."""
    return Sample(time.monotonic(), _run_queue_wait(), _idle_seconds(cpus))


def _run_queue_wait() -> float:
    total = 0
    for task in Path("/proc/self/task").iterdir():
        text = _read(task / "schedstat")
        if text:
            total += int(text.split()[1])
    return total / 1e9


def _idle_seconds(cpus: frozenset[int] | None) -> float:
    ticks = os.sysconf("SC_CLK_TCK")
    idle = 0
    for line in (_read(Path("/proc/stat")) or "").splitlines():
        name, *fields = line.split()
        if name.startswith("cpu") and name != "cpu":
            if cpus is None or int(name[3:]) in cpus:
                idle += int(fields[3]) + int(fields[4])  # idle + iowait
    return idle / ticks


class ThreadGovernor:
    """The step's thread count under contention (see the module docstring). Call
    :meth:`threads` once per step; it reads the counters at most once per window."""

    def __init__(self, budget: ThreadBudget, sample: Callable[[], Sample] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.budget = budget
        self._clock = clock
        self.current = budget.limit
        cpus = frozenset(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
        self._sample = sample or (lambda: read_sample(cpus))
        self._last = self._sample() if budget.adaptive else None
        self.changes = 0

    def threads(self) -> int:
        if not self.budget.adaptive:
            return self.current
        if self._clock() - self._last.wall < WINDOW_S:
            return self.current
        now = self._sample()
        elapsed = now.wall - self._last.wall
        lost = (now.waited - self._last.waited) / elapsed
        idle = (now.idle - self._last.idle) / elapsed
        self._last = now
        wanted = self.decide(lost, idle)
        if wanted != self.current:
            log.info("engine threads %d -> %d (run-queue wait %.2f cores, idle %.2f cores)",
                     self.current, wanted, lost, idle)
            self.current, self.changes = wanted, self.changes + 1
        return self.current

    def decide(self, lost_cores: float, idle_cores: float) -> int:
        if lost_cores > LOST_CORES_DOWN and self.current > 1:
            return self.current - 1
        if idle_cores > IDLE_CORES_UP and self.current < self.budget.limit:
            return self.current + 1
        return self.current
