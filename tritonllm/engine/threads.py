"""How many threads the engine's step runs on: at most what the process may use, and fewer
while other processes take the cores. Plain Python (no torch): it reads /proc and cgroup files.

The step splits each layer across OpenMP threads that meet at a barrier a few hundred times per
step. A thread that is descheduled because another process wants its core makes every other
thread wait at the next barrier for a whole scheduler slice, so a step on N threads beside a
busy neighbour can be many times slower than the same step on N - 1 threads. Which count is
faster depends on what else runs (a neighbour spinning on a core, or only tritonserver and the
pre/postprocessing stubs of the same server), so the governor measures it:

- :func:`thread_budget`: the ceiling, from the CPUs in the affinity mask and the cgroup's CPU
  quota (v2 ``cpu.max``, v1 ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``), floor-rounded, at
  least 1; or the count asked for (``num_threads``), which is then fixed.
- :class:`ThreadGovernor`: between 1 and that ceiling. It times the steps of at most
  ``SMALL_STEP_TOKENS`` tokens (decode steps: their time hardly depends on the batch) per window
  at the current count, and tries a neighbouring count for one window when the step time jumps
  (``JUMP``: a neighbour arrived), when the allowed CPUs sit idle (``IDLE_CORES_UP`` of a core:
  one left) and every ``PROBE_EVERY_S`` in any case; it then keeps whichever count measured
  faster.
"""

from __future__ import annotations

import logging
import math
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

log = logging.getLogger(__name__)

CGROUP_ROOT = Path("/sys/fs/cgroup")
WINDOW_S = 0.5  # a measurement per window: long enough to average over scheduler slices
MIN_STEPS = 3  # timed steps a window needs to count
SMALL_STEP_TOKENS = 16  # steps timed: decode-sized ones
JUMP = 2.0  # step time this many times its last figure at the same count: try one fewer
IDLE_CORES_UP = 0.75  # idle capacity, in cores, that makes it try one more
PROBE_EVERY_S = 20.0  # try a neighbouring count at least this often


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


def allowed_cpus() -> frozenset[int] | None:
    """The CPUs this process may run on (affinity mask, container cpuset); None where the
    platform cannot say."""
    return frozenset(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None


def available_cores() -> int:
    """How many CPU cores this process may run on."""
    cpus = allowed_cpus()
    return len(cpus) if cpus is not None else os.cpu_count() or 1


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


def idle_seconds(cpus: frozenset[int] | None = None) -> float:
    """Idle + iowait seconds of the allowed CPUs since boot (``/proc/stat``)."""
    ticks = os.sysconf("SC_CLK_TCK")
    idle = 0
    for line in (_read(Path("/proc/stat")) or "").splitlines():
        name, *fields = line.split()
        if name.startswith("cpu") and name != "cpu":
            if cpus is None or int(name[3:]) in cpus:
                idle += int(fields[3]) + int(fields[4])  # idle + iowait
    return idle / ticks


class ThreadGovernor:
    """The step's thread count (see the module docstring). After each step, :meth:`record` its
    forward time and token count; before each, :meth:`threads` says how many threads to use.
    ``idle``: the allowed CPUs' cumulative idle seconds (default: from /proc/stat)."""

    def __init__(self, budget: ThreadBudget, idle: Callable[[], float] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.budget = budget
        self.current = budget.limit
        self.changes = 0
        self._clock = clock
        cpus = allowed_cpus()
        self._idle = idle or (lambda: idle_seconds(cpus))
        self._cost: dict[int, float] = {}  # thread count -> mean small-step seconds, latest
        self._steps: list[float] = []
        self._window_start = clock()
        self._idle_start = self._idle() if budget.adaptive else 0.0
        self._probing_from: int | None = None  # the count to compare with after a probe
        self._last_probe = clock()

    def record(self, seconds: float, tokens: int) -> None:
        if self.budget.adaptive and tokens <= SMALL_STEP_TOKENS:
            self._steps.append(seconds)

    def threads(self) -> int:
        """The count for the next step. A window closes after ``WINDOW_S`` once it timed
        ``MIN_STEPS`` steps, or steps that took ``WINDOW_S`` in all (a slow count)."""
        if not self.budget.adaptive:
            return self.current
        now, steps = self._clock(), self._steps
        if now - self._window_start < WINDOW_S or (
                len(steps) < MIN_STEPS and sum(steps) < WINDOW_S):
            return self.current
        idle = self._idle()
        idle_cores = (idle - self._idle_start) / (now - self._window_start)
        self._steps, self._window_start, self._idle_start = [], now, idle
        self._decide(sum(steps) / len(steps), idle_cores)
        return self.current

    def _decide(self, cost: float, idle_cores: float) -> None:
        previous = self._cost.get(self.current)
        self._cost[self.current] = cost
        if self._probing_from is not None:  # a probe window just ended: keep the faster
            origin, self._probing_from = self._probing_from, None
            if cost >= self._cost[origin]:
                self._switch(origin, f"{cost * 1e3:.1f} ms per step against "
                                     f"{self._cost[origin] * 1e3:.1f} ms")
            return
        if previous is not None and cost > JUMP * previous and self.current > 1:
            self._probe(self.current - 1, f"step time {previous * 1e3:.1f} -> "
                                          f"{cost * 1e3:.1f} ms")
        elif idle_cores > IDLE_CORES_UP and self.current < self.budget.limit:
            self._probe(self.current + 1, f"{idle_cores:.2f} cores idle")
        elif (unmeasured := [n for n in (self.current - 1, self.current + 1)
                             if 1 <= n <= self.budget.limit and n not in self._cost]):
            self._probe(unmeasured[0], "first measurement")
        elif self._clock() - self._last_probe >= PROBE_EVERY_S and self.budget.limit > 1:
            self._probe(self.current + 1 if self.current < self.budget.limit
                        else self.current - 1, "periodic check")

    def _probe(self, count: int, why: str) -> None:
        self._probing_from, self._last_probe = self.current, self._clock()
        self._switch(count, f"trying it: {why}")

    def _switch(self, count: int, why: str) -> None:
        log.info("engine threads %d -> %d (%s)", self.current, count, why)
        self.current, self.changes = count, self.changes + 1


def on_own_thread(fn, *args):
    """``fn(*args)`` on a thread that exits when it returns (its exception is raised here).

    Why the model loads this way: OpenMP (libgomp) keeps a pool of worker threads for each
    thread that ran a parallel region, until that thread exits. Loading on the caller's thread
    would leave its idle pool beside the step thread's, and once libgomp manages more threads
    than there are cores it cuts its spin-wait to ~100 spins: the step's threads then sleep and
    wake at each of its ~200 barriers (measured: ~200 voluntary context switches per step
    against 0, and slower steps whenever anything else runs, as tritonserver does).
    """
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="tritonllm-load") as pool:
        return pool.submit(fn, *args).result()  # leaving the block joins the thread
