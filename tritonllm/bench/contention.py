"""Serving on a busy machine: busy neighbour processes beside a run, and servers restricted to
some CPUs, for ``tritonllm bench serving --neighbours N --server-cpus LIST``.

A neighbour is a process that spins on one core for the length of a run (what a compiler, a
second replica or a Locust worker does to a server sharing its node). Contended runs interleave
with the quiet ones, so each target's ratio contended / quiet comes from one benchmark run.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time
from contextlib import contextmanager
from typing import Callable, Iterator

from tritonllm.bench.engine_bench import RunResult, p50_text

BUSY_LOOP = "while True: pass"
SETTLE_S = 0.2  # neighbours running before the run starts


def contended_label(label: str, neighbours: int) -> str:
    return f"{label} +{neighbours} busy"


@contextmanager
def busy_neighbours(count: int) -> Iterator[list[subprocess.Popen]]:
    """``count`` processes that each keep one core busy until the block ends."""
    procs = [subprocess.Popen([sys.executable, "-c", BUSY_LOOP]) for _ in range(count)]
    try:
        if procs:
            time.sleep(SETTLE_S)
        yield procs
    finally:
        for proc in procs:
            proc.kill()
        for proc in procs:
            proc.wait()


def contended(run: Callable[[int], RunResult], neighbours: int) -> Callable[[int], RunResult]:
    """``run(level)`` with ``neighbours`` busy processes beside it."""
    def run_contended(level: int) -> RunResult:
        with busy_neighbours(neighbours):
            result = run(level)
        return dataclasses.replace(result, name=contended_label(result.name, neighbours))
    return run_contended


@contextmanager
def children_on(cpus: set[int] | None) -> Iterator[None]:
    """Processes started inside the block inherit the CPU set ``cpus`` (None: unchanged); this
    process gets its own set back afterwards."""
    if not cpus:
        yield
        return
    mine = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus)
    try:
        yield
    finally:
        os.sched_setaffinity(0, mine)


def parse_cpus(text: str | None) -> set[int] | None:
    """``"0"``, ``"0,2"`` or ``"0-3"`` -> CPU numbers; ValueError names the field."""
    if not text:
        return None
    cpus: set[int] = set()
    try:
        for part in text.split(","):
            low, _, high = part.partition("-")
            cpus.update(range(int(low), int(high or low) + 1))
    except ValueError:
        raise ValueError(f"--server-cpus: expected e.g. 0 or 0,1 or 0-3, got {text!r}") from None
    allowed = os.sched_getaffinity(0)
    if not cpus <= allowed:
        raise ValueError(f"--server-cpus: {sorted(cpus - allowed)} not among this process's "
                         f"CPUs {sorted(allowed)}")
    return cpus


def format_contention(quiet: dict[str, list[RunResult]], busy: dict[str, list[RunResult]],
                      levels: list[int], neighbours: int) -> str:
    """Per target and concurrency: quiet and contended tok/s, their ratio, TTFT p50 of both."""
    header = (f"{'target':34} {'c':>2} {'quiet tok/s':>11} {f'+{neighbours} busy':>11} "
              f"{'ratio':>6} {'TTFT p50 quiet/busy ms':>23}")
    lines = [header, "-" * len(header)]
    for label, runs in quiet.items():
        for level, calm, loaded in zip(levels, runs, busy[label]):
            lines.append(f"{label:34} {level:>2} {calm.tokens_per_s:11.1f} "
                         f"{loaded.tokens_per_s:11.1f} "
                         f"{loaded.tokens_per_s / calm.tokens_per_s:5.2f}x "
                         f"{p50_text(calm.ttft_ms):>11}/{p50_text(loaded.ttft_ms):<11}")
    return "\n".join(lines)
