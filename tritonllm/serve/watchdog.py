"""Crash detection for a running tritonserver: the failures it does not report itself.

Measured on Triton 2.51 (the CPU image) with the ``tensorrt_llm`` Python-backend stub SIGKILLed
while two requests streamed: ``/v2/health/ready`` and both models' readiness stayed 200, the
in-flight requests hung until their client deadline, every later request failed at once with
"Stub process 'tensorrt_llm_0_0' is not healthy", the stub was not restarted, and SIGTERM then
waited the whole exit timeout for the hung requests. So the server keeps looking healthy while
it can serve nothing. Our decision: a dead backend stub is fatal. The supervisor (``tritonllm
serve``, the container entrypoint) stops tritonserver at once and exits non-zero with the
reason; Kubernetes (or the operator) restarts the whole server, which reloads the model.

:class:`Watchdog` arms once the server first answers ``/v2/health/ready`` (stubs come and go
while models load), then :meth:`Watchdog.check` reports, as a sentence:

- a backend stub seen since then that is gone (found through ``/proc``: descendants of the
  server whose command is ``triton_python_backend_stub``); models loaded later join the watch;
- ``/v2/health/ready`` answering not-ready (any HTTP status but 200) ``not_ready_limit`` times in
  a row. A health call that times out or cannot connect counts as unknown, not as not-ready:
  a busy server must not be restarted for being slow, and a dead one is seen by its exit.

The engine loop dying inside a live stub (tritonllm.models.crash) ends that stub, so it is
reported here too.
"""

from __future__ import annotations

import subprocess
import urllib.error
import urllib.request
from pathlib import Path

from tritonllm.defaults import HTTP_PORT
from tritonllm.serve.procfs import descendants

STUB_NAME = "triton_python_backend_stub"
EXIT_UNHEALTHY = 3  # a supervisor's exit status when tritonserver lived but could not serve
DEFAULT_POLL_S = 1.0
NOT_READY_LIMIT = 3
HEALTH_TIMEOUT_S = 5.0


def backend_stubs(root_pid: int) -> dict[int, str]:
    """The living Python-backend stubs below ``root_pid``: pid -> model instance name
    (``tensorrt_llm_0_0``; the model.py path when the command line has no instance name)."""
    return {pid: _instance_name(args) for pid, args in descendants(root_pid).items()
            if args and Path(args[0]).name == STUB_NAME}


class Watchdog:
    """Health of one tritonserver process (``server_pid``) answering on ``ready_url``
    (``http://host:port/v2/health/ready``, or None to watch the stubs only). ``ready``: the
    caller has just seen the server ready, so the watch starts now with the stubs running now
    (otherwise at the first check that finds it ready). Not thread-safe: call :meth:`check`
    from one thread."""

    def __init__(self, server_pid: int, ready_url: str | None, *, ready: bool = False,
                 not_ready_limit: int = NOT_READY_LIMIT):
        if not_ready_limit < 1:
            raise ValueError(f"not_ready_limit: must be >= 1, got {not_ready_limit}")
        self.server_pid = server_pid
        self.ready_url = ready_url
        self.not_ready_limit = not_ready_limit
        self.armed = ready or ready_url is None
        self.stubs: dict[int, str] = backend_stubs(server_pid) if self.armed else {}
        self._not_ready = 0

    def check(self) -> str | None:
        """None while healthy (or not yet armed); else why the server cannot serve."""
        status = _ready_status(self.ready_url) if self.ready_url else 200
        if not self.armed:
            self.armed = status == 200
            self.stubs = backend_stubs(self.server_pid) if self.armed else {}
            return None
        return self._dead_stub() or self._not_ready_for_long(status)

    def _dead_stub(self) -> str | None:
        now = backend_stubs(self.server_pid)
        for pid, name in self.stubs.items():
            if pid not in now:
                return (f"the Python-backend stub of model instance {name} (pid {pid}) died; "
                        "its model cannot serve until the server restarts")
        self.stubs.update(now)
        return None

    def _not_ready_for_long(self, status: int | None) -> str | None:
        self._not_ready = self._not_ready + 1 if status not in (200, None) else 0
        if self._not_ready >= self.not_ready_limit:
            return (f"tritonserver answered {self.ready_url} with HTTP {status} "
                    f"{self._not_ready} times in a row")
        return None


def for_command(pid: int, argv: list[str]) -> Watchdog | None:
    """A watchdog for a process started from ``argv`` when it runs tritonserver (directly or
    under mpirun): readiness on 127.0.0.1 at its ``--http-port`` (default 8000), armed once
    ready. None for any other command."""
    if not any(Path(arg).name == "tritonserver" for arg in argv):
        return None
    port = str(HTTP_PORT)
    for i, arg in enumerate(argv):
        if arg.startswith("--http-port="):
            port = arg.split("=", 1)[1]
        elif arg == "--http-port" and i + 1 < len(argv):
            port = argv[i + 1]
    return Watchdog(pid, f"http://127.0.0.1:{port}/v2/health/ready")


def _ready_status(url: str) -> int | None:
    """The HTTP status of ``url``; None when it cannot be known (timeout, refused)."""
    try:
        with urllib.request.urlopen(url, timeout=HEALTH_TIMEOUT_S) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (urllib.error.URLError, OSError):
        return None


def _instance_name(args: list[str]) -> str:
    # triton_python_backend_stub MODEL_PY SHM_REGION SIZE GROW PARENT_PID LIB_DIR HEALTH NAME KIND
    return args[8] if len(args) > 9 else (args[1] if len(args) > 1 else args[0])








def wait_for_exit_or_crash(proc, watchdog: Watchdog, poll_s: float = DEFAULT_POLL_S):
    """Block until ``proc`` (a ``subprocess.Popen``) exits (returns its return code, an int)
    or ``watchdog`` finds it unable to serve (returns the reason, a str)."""
    while True:
        try:
            return proc.wait(timeout=poll_s)
        except subprocess.TimeoutExpired:
            pass
        if (reason := watchdog.check()) is not None:
            return reason
