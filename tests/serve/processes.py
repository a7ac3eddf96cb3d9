"""Process-tree helpers for the lifecycle tests: who descends from a pid, and waiting (with a
generous deadline that only detects a hang) until given pids are gone."""

from __future__ import annotations

import os
import signal
import sys
import time

from tests.conftest import TEST_ENGINE
from tritonllm.serve import procfs


def serve_command(ports, repo_dir, openai_port: int = 0, *extra: str) -> list[str]:
    """``tritonllm serve`` with the small test engine on the given ports."""
    e = TEST_ENGINE
    return [sys.executable, "-m", "tritonllm.cli", "serve", "--http-port", str(ports.http),
            "--grpc-port", str(ports.grpc), "--metrics-port", str(ports.metrics),
            "--openai-port", str(openai_port), "--repo-dir", str(repo_dir),
            "--max-tokens-in-paged-kv-cache", str(e.max_tokens_in_paged_kv_cache),
            "--max-seq-len", str(e.max_seq_len),
            "--max-input-len", str(e.max_input_len), "--num-threads", "1", *extra]


def alive(pid: int) -> bool:
    stat = procfs.state_and_parent(pid)
    return stat is not None and stat[0] != "Z"


def descendants(root: int) -> dict[int, str]:
    """Every living descendant of ``root``: pid -> command line."""
    return {pid: " ".join(args) for pid, args in procfs.descendants(root).items()}


def kill_tree(pid: int) -> None:
    """SIGKILL ``pid`` and every living descendant (a test's cleanup)."""
    for target in [*descendants(pid), pid]:
        try:
            os.kill(target, signal.SIGKILL)
        except ProcessLookupError:
            pass


def wait_gone(pids, timeout_s: float = 120.0) -> list[int]:
    """Wait until none of ``pids`` lives; returns those still alive at the deadline (a hang)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        left = [pid for pid in pids if alive(pid)]
        if not left:
            return []
        time.sleep(0.5)
    return [pid for pid in pids if alive(pid)]


def wait_for_line(stream, needle: str, timeout_s: float = 300.0) -> str:
    """Read ``stream`` until a line contains ``needle``; returns what was read."""
    deadline, seen = time.monotonic() + timeout_s, []
    while time.monotonic() < deadline:
        line = stream.readline()
        if not line:
            break
        seen.append(line)
        if needle in line:
            return "".join(seen)
    raise AssertionError(f"{needle!r} never came; output:\n{''.join(seen)}")
