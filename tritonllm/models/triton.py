"""Helpers shared by the ``model.py`` adapters.

``pb_utils`` (Triton's ``triton_python_backend_utils``) is passed in by the adapter: it exists only
inside the Python backend's stub process, and the package must import without it.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
import traceback
from typing import Callable

import numpy as np

from tritonllm.contract import ModelContract
from tritonllm.engine.engine import QueueFullError

log = logging.getLogger(__name__)

# Errors whose message is for the client (bad input); anything else is our fault, except a full
# queue: UNAVAILABLE (HTTP 503), retry later.
CLIENT_ERRORS = (ValueError,)
BUSY_ERRORS = (QueueFullError,)


def parameters(args: dict) -> dict[str, str]:
    """The ``parameters`` of a model's config.pbtxt as a plain dict."""
    config = json.loads(args["model_config"])
    return {k: v["string_value"] for k, v in config.get("parameters", {}).items()}


def read_inputs(pb_utils, request, model: ModelContract) -> dict[str, np.ndarray]:
    """The inputs present in ``request`` as numpy arrays (batch dimension first)."""
    inputs = {}
    for tensor in model.inputs:
        value = pb_utils.get_input_tensor_by_name(request, tensor.name)
        if value is not None:
            inputs[tensor.name] = value.as_numpy()
    return inputs


def to_tensors(pb_utils, outputs: dict[str, np.ndarray]) -> list:
    return [pb_utils.Tensor(name, np.asarray(value)) for name, value in outputs.items()]


def error(pb_utils, exc: BaseException):
    """A TritonError for this request only: INVALID_ARG for client errors, UNAVAILABLE for a
    full queue, INTERNAL otherwise."""
    if isinstance(exc, BUSY_ERRORS):
        return pb_utils.TritonError(str(exc), pb_utils.TritonError.UNAVAILABLE)
    if isinstance(exc, CLIENT_ERRORS):
        return pb_utils.TritonError(str(exc), pb_utils.TritonError.INVALID_ARG)
    return pb_utils.TritonError(f"internal error: {exc!r}\n{traceback.format_exc()}",
                                pb_utils.TritonError.INTERNAL)


def respond(pb_utils, request, model: ModelContract,
            handler: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]):
    """Run ``handler`` on one request's inputs; failures become that request's error."""
    try:
        outputs = handler(read_inputs(pb_utils, request, model))
        return pb_utils.InferenceResponse(output_tensors=to_tensors(pb_utils, outputs))
    except Exception as exc:  # noqa: BLE001 - every failure must reach the client, not the server
        return pb_utils.InferenceResponse(output_tensors=[], error=error(pb_utils, exc))


def submit_each(pb_utils, requests, submit: Callable) -> None:
    """A decoupled model's ``execute``: ``submit(request, sender)`` for each request; a
    failure becomes that request's one, final error response (the others are unaffected)."""
    final = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL
    for request in requests:
        sender = request.get_response_sender()
        try:
            submit(request, sender)
        except Exception as exc:  # noqa: BLE001 - the error belongs to this request only
            sender.send(pb_utils.InferenceResponse(output_tensors=[], error=error(pb_utils, exc)),
                        flags=final)


class ResponseQueue:
    """Sends one model instance's responses from a thread of its own, in the order queued.

    python_backend's ``ResponseSender.send`` returns only once tritonserver has taken the
    response: about 1 ms per streamed token on 2 cores. Sent from the engine thread, that wait
    would be paid once per running request in every step; queued, the engine computes its next
    step while tritonserver takes this step's responses. One thread keeps each request's
    responses in order (its FINAL flag last). At most ``max_waiting`` responses wait: beyond
    that :meth:`put` blocks, so an engine faster than tritonserver is held back instead of
    piling up tokens nobody has received yet.
    """

    def __init__(self, max_waiting: int = 64, name: str = "tritonllm-responses") -> None:
        self._queue: queue.Queue = queue.Queue(maxsize=max_waiting)
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def put(self, send: Callable[[], None],
            on_error: Callable[[BaseException], None] | None = None) -> None:
        """Run ``send()`` on the queue's thread; if it raises, ``on_error(exc)`` there."""
        self._queue.put((send, on_error))

    def close(self, timeout: float | None = None) -> bool:
        """Send what is queued, then end the thread; False if ``timeout`` ran out first."""
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            return False
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            send, on_error = item
            try:
                send()
            except Exception as exc:  # noqa: BLE001 - one failed send must not stop the rest
                log.warning("could not send a response: %r", exc)
                if on_error is not None:
                    try:
                        on_error(exc)
                    except Exception:  # noqa: BLE001
                        log.exception("the send-error handler failed")


def polled(check: Callable[[], bool], period_s: float,
           clock: Callable[[], float] = time.monotonic) -> Callable[[], bool]:
    """``check`` called at most once per ``period_s``; True once it returned True.

    For ``ResponseSender.is_cancelled``, which asks tritonserver over IPC (~0.4 ms): the engine
    asks once per running request per step. TensorRT-LLM's backend checks every
    ``cancellation_check_period_ms`` (default 100) the same way.
    """
    last = [float("-inf")]
    cancelled = [False]

    def ask() -> bool:
        if not cancelled[0] and clock() - last[0] >= period_s:
            last[0] = clock()
            cancelled[0] = bool(check())
        return cancelled[0]

    return ask


# Engine finish reasons answered with an error instead of outputs, and their Triton codes.
_ERROR_CODES = {"error": "INTERNAL", "timeout": "CANCELLED"}


def engine_output_sender(pb_utils, sender, to_outputs: Callable, on_finished: Callable,
                         responses: ResponseQueue,
                         on_send_error: Callable[[BaseException], None] | None = None):
    """An engine ``on_output`` callback that answers one Triton request through ``sender``.

    Each engine output becomes one response (``to_outputs`` turns it into named arrays, on the
    engine thread, while the output is current); the last carries the FINAL flag. The response
    is sent from ``responses``' thread; if sending fails, ``on_send_error(exc)`` (the adapter
    cancels the request: nobody can receive its tokens). An engine failure becomes an INTERNAL
    error response (the request's fault never reaches here: bad input is refused before it is
    queued); a request ended by its timeout, a CANCELLED one saying so.
    ``on_finished(output)`` runs before the final response is queued, so a client holding its
    reply already finds the request in the metrics.
    """
    final = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL

    def on_output(output) -> None:
        if output.finished:
            on_finished(output)
        if output.error and output.finish_reason in _ERROR_CODES:
            code = getattr(pb_utils.TritonError, _ERROR_CODES[output.finish_reason])
            text = output.error if output.finish_reason == "timeout" else \
                f"internal error: {output.error}"
            response = pb_utils.InferenceResponse(output_tensors=[],
                                                  error=pb_utils.TritonError(text, code))
            flags = final
        else:
            response = pb_utils.InferenceResponse(
                output_tensors=to_tensors(pb_utils, to_outputs(output)))
            flags = final if output.finished else 0
        responses.put(lambda: sender.send(response, flags=flags), on_send_error)

    return on_output
