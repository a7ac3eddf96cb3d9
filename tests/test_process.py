"""The two orphan guards on real processes: a grandchild must die when its parent is killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from tests.serve.processes import wait_gone
from tritonllm.process import exit_when_orphaned

# A parent that starts one child, waits until the child says it is armed, prints the child's
# pid, then sleeps (until we SIGKILL it).
PARENT = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", {child!r}], stdout=subprocess.PIPE{popen_extra})
child.stdout.readline()
print(child.pid, flush=True)
time.sleep(600)
"""
SLEEPER = "import time; print('armed', flush=True); time.sleep(600)"
WATCHED = ("import time; from tritonllm.process import exit_when_orphaned; "
           "exit_when_orphaned(0.1); print('armed', flush=True); time.sleep(600)")
# As a stub blocked in a pb_utils call: the main thread sleeps in C while holding the GIL
# (ctypes.PyDLL keeps it), so no Python thread of this process can run.
WATCHED_HOLDING_THE_GIL = (
    "import ctypes; from tritonllm.process import exit_when_orphaned; "
    "exit_when_orphaned(0.1); print('armed', flush=True); ctypes.PyDLL(None).sleep(600)")


def _orphan_a_child(child: str, popen_extra: str = "") -> int:
    """Run PARENT, SIGKILL it, return the child's pid."""
    parent = subprocess.Popen([sys.executable, "-c", PARENT.format(child=child,
                                                                   popen_extra=popen_extra)],
                              stdout=subprocess.PIPE, text=True)
    pid = int(parent.stdout.readline())
    parent.kill()
    parent.wait()
    return pid


def _reap(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def test_die_with_parent_signals_the_child_when_the_parent_is_killed():
    extra = ", preexec_fn=__import__('tritonllm.process').process.die_with_parent()"
    pid = _orphan_a_child(SLEEPER, extra)
    try:
        assert wait_gone([pid], timeout_s=60) == []
    finally:
        _reap(pid)


def test_exit_when_orphaned_ends_a_process_whose_parent_died():
    pid = _orphan_a_child(WATCHED)
    try:
        assert wait_gone([pid], timeout_s=60) == []
    finally:
        _reap(pid)


def test_exit_when_orphaned_works_while_the_process_holds_the_gil():
    pid = _orphan_a_child(WATCHED_HOLDING_THE_GIL)
    try:
        assert wait_gone([pid], timeout_s=60) == []
    finally:
        _reap(pid)


def test_without_a_guard_the_child_survives_its_parent():
    """The control: the two tests above prove something."""
    pid = _orphan_a_child(SLEEPER)
    try:
        assert wait_gone([pid], timeout_s=2) == [pid]
    finally:
        _reap(pid)


def test_the_watchdog_can_be_stopped_and_refuses_a_bad_interval():
    watcher = exit_when_orphaned(0.05)
    assert watcher.poll() is None  # watching: this process still has its parent
    watcher.terminate()
    assert watcher.wait(timeout=10) is not None
    with pytest.raises(ValueError, match="poll_s"):
        exit_when_orphaned(0)
