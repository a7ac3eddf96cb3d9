"""Load tests that always end: stop after a run of connection failures, never hang at exit.

- :class:`ConnectionGuard` counts consecutive failed requests whose error says the server
  could not be reached (refused, reset, gRPC UNAVAILABLE ...); any success resets the count.
  At ``limit`` it says why the run should stop: pointed at a closed port a run then ends in
  seconds with the reason, instead of failing thousands of requests until ``-t``.
- :func:`arm_exit_backstop` starts a real OS thread (not a greenlet, so a blocked gevent hub
  cannot stop it) that ends the process with ``os._exit(code)`` if it is still alive
  ``grace_s`` after Locust's ``quit`` event. Locust has printed its summary and written its
  reports by then; what hangs afterwards is interpreter shutdown joining a gRPC client's
  threads, which neither ``-t`` nor SIGTERM could end.
"""

from __future__ import annotations

import logging
import os
import sys

CONNECTION_FAILED_EXIT_CODE = 4
DEFAULT_MAX_CONNECTION_FAILURES = 50
EXIT_GRACE_S = 10.0
CONNECTION_ERROR_MARKERS = ("connection", "connect", "refused", "unavailable", "unreachable",
                            "reset by peer", "broken pipe", "name or service not known")

log = logging.getLogger("tritonllm.loadtest")


def is_connection_error(error: object) -> bool:
    """True when ``error`` (an exception or a message) says the server could not be reached."""
    text = f"{type(error).__name__}: {error}".lower()
    return any(marker in text for marker in CONNECTION_ERROR_MARKERS)


class ConnectionGuard:
    """``record(error)`` after every request (``None`` on success); returns the reason to stop
    once ``limit`` consecutive requests failed to connect, else None. ``limit`` 0 disables."""

    def __init__(self, limit: int = DEFAULT_MAX_CONNECTION_FAILURES) -> None:
        if limit < 0:
            raise ValueError(f"max_connection_failures: must be >= 0, got {limit}")
        self.limit = limit
        self.consecutive = 0
        self.tripped = False

    def record(self, error: object | None) -> str | None:
        if error is None or not is_connection_error(error):
            self.consecutive = 0
            return None
        self.consecutive += 1
        if self.limit and self.consecutive >= self.limit and not self.tripped:
            self.tripped = True
            return (f"{self.consecutive} consecutive requests could not reach the server "
                    f"(last: {str(error)[:200]}); stopping the run")
        return None


def arm_exit_backstop(code: int, grace_s: float = EXIT_GRACE_S) -> None:
    """End this process with ``code`` if it has not exited ``grace_s`` seconds from now."""
    start_thread, sleep = _original_thread_tools()

    def backstop() -> None:
        sleep(grace_s)
        log.error("still running %.0f s after the end of the run: exiting (code %d)",
                  grace_s, code)
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001 - exiting anyway
                pass
        os._exit(code)

    start_thread(backstop, ())


def _original_thread_tools():
    """``_thread.start_new_thread`` and ``time.sleep`` as they were before gevent patched them."""
    try:
        from gevent import monkey

        return (monkey.get_original("_thread", "start_new_thread"),
                monkey.get_original("time", "sleep"))
    except ImportError:
        import _thread
        import time

        return _thread.start_new_thread, time.sleep
