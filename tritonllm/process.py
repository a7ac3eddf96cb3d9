"""Process helpers shared by the launcher, the supervisor, the OpenAI frontend, the benchmarks and
the Triton models: children that never outlive the process that started them (Linux), and
killing a process group.

Two tools, for two kinds of child:

- :func:`die_with_parent` is a ``preexec_fn`` for ``subprocess.Popen``: the child asks the
  kernel (``prctl(PR_SET_PDEATHSIG)``) for ``signum`` when its parent dies, ``kill -9`` and the
  OOM killer included. The kernel fires it when the *thread* that forked the child exits, not
  only the process: start such children from a thread that lives as long as they should (the
  main thread). If the parent is already gone when the child runs this, the child exits.
- :func:`exit_when_orphaned` is for code running inside a process we do not start ourselves
  (a Triton Python-backend stub, forked by tritonserver): a small watcher process (``/bin/sh``)
  that notices the stub has been re-parented (its server died) and SIGKILLs it, so a stub whose
  server died never keeps its model and KV cache resident. Why a process and not a thread: the
  stub's C++ calls (``pb_utils`` metrics, response sending) can block on the dead server while
  holding the GIL, and a watchdog thread then never runs again (seen: an orphaned stub stuck in
  ``MetricFamily`` ``set`` with its watchdog thread waiting for the GIL).

On systems without ``prctl`` (not Linux) :func:`die_with_parent` does nothing.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def die_with_parent(signum: int = signal.SIGTERM):
    """A ``preexec_fn`` that makes the child receive ``signum`` when its parent thread dies."""
    parent = os.getpid()  # evaluated in the parent, before the fork

    def preexec() -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
        except OSError:
            return
        if libc.prctl(PR_SET_PDEATHSIG, int(signum), 0, 0, 0) != 0:
            return
        if os.getppid() != parent:  # the parent died between fork and prctl
            os._exit(1)

    return preexec


# Exits when the watched process is gone; SIGKILLs it once its parent is no longer ``parent``.
# /proc/<pid>/stat: "pid (comm) state ppid ..."; comm may hold spaces, so cut after the last ")".
_WATCHER = r"""
target=$1 parent=$2 poll=$3
while read -r stat < /proc/$target/stat 2>/dev/null; do
    set -- ${stat##*) }
    [ "$2" = "$parent" ] || { kill -9 "$target"; exit 0; }
    sleep "$poll"
done
"""


def exit_when_orphaned(poll_s: float = 1.0) -> subprocess.Popen:
    """Start a watcher process that SIGKILLs this process once its parent has died (checked
    every ``poll_s`` seconds: this process's parent pid changes when it is re-parented).
    Returns the watcher; ``terminate()`` it to stop watching. Call it while the parent is alive
    (a stub's ``initialize``): the parent is whatever ``getppid()`` says at the call. The
    watcher ends by itself when this process ends. Cheap: one ``/proc`` read per poll."""
    if poll_s <= 0:
        raise ValueError(f"poll_s: must be > 0 seconds, got {poll_s}")
    return subprocess.Popen(["/bin/sh", "-c", _WATCHER, "orphan-watch", str(os.getpid()),
                             str(os.getppid()), f"{poll_s:g}"],
                            stdin=subprocess.DEVNULL, close_fds=True)


def kill_group(pgid: int) -> None:
    """SIGKILL every process of group ``pgid``; nothing to do when it is gone or not ours."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
