"""What a model instance does when its engine's step loop dies: answer, then end the process.

The engine catches what goes wrong inside a step (that request, or that batch, fails; the loop
keeps serving). An exception that escapes the loop itself ends the engine thread, and
:attr:`LLMEngine.on_fatal` hears it. Nothing would ever answer the requests in flight, so
:class:`InFlight` keeps each one's ``on_output`` until its final output, and
:func:`on_engine_fatal` then:

1. sends every request in flight a final output with ``finish_reason="error"`` and the message
   ``engine loop died: <the exception>`` (the adapter turns it into an INTERNAL error response);
2. refuses every later request (:meth:`InFlight.track` raises ``EngineDeadError``);
3. ends this process (the Python-backend stub) with exit status ``EXIT_STATUS``.

A dead stub is what ``tritonllm serve`` and the container entrypoint watch for
(:mod:`tritonllm.serve.watchdog`): they stop the server and exit non-zero, so it is restarted.
Ending the process rather than lingering also means the stub never serves half-alive.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Callable

from tritonllm.engine import GenerationOutput

log = logging.getLogger(__name__)

EXIT_STATUS = 70  # EX_SOFTWARE: an internal error ended the model instance

OutputCallback = Callable[[GenerationOutput], None]


class EngineDeadError(RuntimeError):
    """The engine's step loop has died; the model instance cannot take requests."""


class InFlight:
    """The requests handed to one engine and not yet finished: engine request id ->
    ``on_output``. Thread-safe. Each request gets exactly one final output: the engine's, or
    the one :meth:`fail_all` sends, whichever comes first."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._callbacks: dict[str, OutputCallback] = {}
        self.fatal: str | None = None

    def __len__(self) -> int:
        with self._lock:
            return len(self._callbacks)

    def track(self, request_id: str, on_output: OutputCallback) -> OutputCallback:
        """Register a request; returns the callback to give the engine instead of
        ``on_output``. Raises EngineDeadError once the engine has died."""
        with self._lock:
            if self.fatal is not None:
                raise EngineDeadError(self.fatal)
            self._callbacks[request_id] = on_output

        def tracked(output: GenerationOutput) -> None:
            with self._lock:
                live = request_id in self._callbacks
                if live and output.finished:
                    del self._callbacks[request_id]
            if live:
                on_output(output)

        return tracked

    def forget(self, request_id: str) -> None:
        """Drop a request the engine refused (it was never queued)."""
        with self._lock:
            self._callbacks.pop(request_id, None)

    def fail_all(self, message: str) -> int:
        """Mark the engine dead and send each request in flight its final error output;
        returns how many were failed. A failing callback does not stop the others."""
        with self._lock:
            self.fatal = message
            callbacks, self._callbacks = self._callbacks, {}
        for request_id, on_output in callbacks.items():
            try:
                on_output(GenerationOutput(request_id=request_id, token_ids=[], finished=True,
                                           finish_reason="error", error=message))
            except Exception:  # noqa: BLE001 - the other requests must still be answered
                log.exception("could not fail request %s", request_id)
        return len(callbacks)


def exit_process() -> None:
    """End this process now (no cleanup: the engine's state is not to be trusted)."""
    os._exit(EXIT_STATUS)


def on_engine_fatal(inflight: InFlight,
                    end_process: Callable[[], None] = exit_process) -> Callable[[BaseException],
                                                                                None]:
    """An ``LLMEngine.on_fatal`` handler: fail ``inflight``, then ``end_process()``."""

    def handle(exc: BaseException) -> None:
        message = f"engine loop died: {exc!r}"
        log.critical("%s; failing the requests in flight and ending this model instance",
                     message, exc_info=exc)
        failed = inflight.fail_all(message)
        log.critical("failed %d requests in flight", failed)
        end_process()

    return handle
