"""Run the server as a child process and forward termination signals to it.

A container's main process receives ``docker stop`` / Kubernetes' SIGTERM. The entrypoint runs
tritonserver (or mpirun) as a child in its own session, so a terminal's Ctrl-C does not hit
every process at once, and forwards SIGTERM, SIGINT, SIGHUP and SIGQUIT to that child only. The
child then drains: tritonserver stops taking new requests and finishes those in flight; mpirun
passes the signal to its ranks. Only when the child outlives ``kill_after_s`` (or a second
signal arrives, an impatient operator) is its whole process group killed.

The exit status is the child's: its return code, or 128 + the signal that ended it. When the
child runs tritonserver, a watchdog (:mod:`tritonllm.serve.watchdog`) also checks it every
second once it is ready: if a Python-backend stub dies or it keeps answering not-ready, the
supervisor logs why, kills the child's group and exits ``EXIT_UNHEALTHY`` (3), so Kubernetes
restarts the container (Triton 2.51 would keep reporting ready and never recover the model).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from tritonllm.process import kill_group
from tritonllm.serve.watchdog import EXIT_UNHEALTHY, Watchdog, for_command

FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT)


class _Forwarder:
    """Signal handlers for one child. Installed before the child starts, so a signal that
    arrives while it is being spawned is kept and delivered as soon as it exists."""

    def __init__(self):
        self.proc: subprocess.Popen | None = None
        self.pending: int | None = None
        self.first_signal_at: float | None = None

    def __call__(self, signum, _frame) -> None:
        if self.first_signal_at is not None:
            _log(f"second signal {signal.Signals(signum).name}: killing the server")
            if self.proc is not None:
                kill_group(self.proc.pid)
            return
        self.first_signal_at = time.monotonic()
        if self.proc is None:
            self.pending = signum
            return
        _log(f"{signal.Signals(signum).name}: forwarded to pid {self.proc.pid}; draining")
        _send(self.proc.pid, signum)

    def started(self, proc: subprocess.Popen) -> None:
        self.proc = proc
        if self.pending is not None:
            _send(proc.pid, self.pending)


def run_forwarding_signals(argv: list[str], env: dict[str, str] | None = None,
                           kill_after_s: float = 75.0, *, watch: bool = True) -> int:
    """Run ``argv`` to completion, forwarding termination signals; returns its exit status.
    ``watch``: check a tritonserver child's health (see the module docstring).

    Must be called from the main thread (Python delivers signals there).
    """
    forwarder = _Forwarder()
    previous = {sig: signal.signal(sig, forwarder) for sig in FORWARDED}
    proc = None
    try:
        proc = subprocess.Popen(argv, env=env, start_new_session=True)
        forwarder.started(proc)
        return _wait(proc, forwarder, kill_after_s, for_command(proc.pid, argv) if watch else None)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if proc is not None:
            kill_group(proc.pid)  # anything the child left behind in its group


def _wait(proc: subprocess.Popen, forwarder: _Forwarder, kill_after_s: float,
          watchdog: Watchdog | None) -> int:
    next_check = time.monotonic() + 1.0
    while True:
        try:
            code = proc.wait(timeout=0.5)
            return 128 - code if code < 0 else code
        except subprocess.TimeoutExpired:
            started = forwarder.first_signal_at
            if started is not None and time.monotonic() - started > kill_after_s:
                _log(f"server still running {kill_after_s:.0f} s after the signal: killing it")
                kill_group(proc.pid)
        if watchdog and started is None and time.monotonic() >= next_check:
            next_check = time.monotonic() + 1.0
            if (reason := watchdog.check()) is not None:
                _log(f"error: {reason}; killing the server (exit status {EXIT_UNHEALTHY})")
                kill_group(proc.pid)
                proc.wait()
                return EXIT_UNHEALTHY


def _send(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass



def _log(message: str) -> None:
    print(f"[tritonllm] {message}", file=sys.stderr, flush=True)
