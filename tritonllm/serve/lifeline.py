"""Child processes that never outlive the process that started them (Linux).

Two tools, for two kinds of child:

- :func:`die_with_parent` is a ``preexec_fn`` for ``subprocess.Popen``: the child asks the
  kernel (``prctl(PR_SET_PDEATHSIG)``) for ``signum`` when its parent dies, ``kill -9`` and the
  OOM killer included. The kernel fires it when the *thread* that forked the child exits, not
  only the process: start such children from a thread that lives as long as they should (the
  main thread). If the parent is already gone when the child runs this, the child exits.
- :func:`exit_when_orphaned` is for code running inside a process we do not start ourselves
  (a Triton Python-backend stub, forked by tritonserver): a daemon thread that notices the
  parent has gone (the process was re-parented) and ends this process with SIGKILL, so a stub
  whose server died never keeps its model and KV cache resident.

On systems without ``prctl`` (not Linux) :func:`die_with_parent` does nothing.
"""

from __future__ import annotations

import ctypes
import os
import signal
import threading

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


def exit_when_orphaned(poll_s: float = 1.0) -> threading.Event:
    """Start a daemon thread that SIGKILLs this process once its parent has died (checked every
    ``poll_s`` seconds, through a change of ``os.getppid()``). Returns an event; set it to stop
    watching (e.g. in ``finalize``). Call it while the parent is alive (a stub's
    ``initialize``): the parent is whatever ``getppid()`` says at the call. Cheap: one
    ``getppid`` per poll."""
    if poll_s <= 0:
        raise ValueError(f"poll_s: must be > 0 seconds, got {poll_s}")
    parent, stop = os.getppid(), threading.Event()

    def watch() -> None:
        while not stop.wait(poll_s):
            if os.getppid() != parent:
                os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="tritonllm-orphan-watchdog", daemon=True).start()
    return stop
