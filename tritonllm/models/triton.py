"""Helpers shared by the ``model.py`` adapters.

``pb_utils`` (Triton's ``triton_python_backend_utils``) is passed in by the adapter: it exists only
inside the Python backend's stub process, and the package must import without it.
"""

from __future__ import annotations

import json
import traceback
from typing import Callable

import numpy as np

from tritonllm.contract import ModelContract
from tritonllm.engine.engine import QueueFullError

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


# Engine finish reasons answered with an error instead of outputs, and their Triton codes.
_ERROR_CODES = {"error": "INTERNAL", "timeout": "CANCELLED"}


def engine_output_sender(pb_utils, sender, to_outputs: Callable, on_finished: Callable):
    """An engine ``on_output`` callback that answers one Triton request through ``sender``.

    Each engine output becomes one response (``to_outputs`` turns it into named arrays); the
    last carries the FINAL flag. An engine failure becomes an INTERNAL error response (the
    request's fault never reaches here: bad input is refused before it is queued); a request
    ended by its timeout, a CANCELLED one saying so.
    ``on_finished(output)`` runs just before the final response is sent, so a client holding
    its reply already finds the request in the metrics (counted after the send, a scrape right
    after the reply could miss it).
    """
    final = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL

    def on_output(output) -> None:
        if output.finished:
            on_finished(output)
        if output.error and output.finish_reason in _ERROR_CODES:
            code = getattr(pb_utils.TritonError, _ERROR_CODES[output.finish_reason])
            text = output.error if output.finish_reason == "timeout" else \
                f"internal error: {output.error}"
            error = pb_utils.TritonError(text, code)
            sender.send(pb_utils.InferenceResponse(output_tensors=[], error=error), flags=final)
        else:
            tensors = to_tensors(pb_utils, to_outputs(output))
            sender.send(pb_utils.InferenceResponse(output_tensors=tensors),
                        flags=final if output.finished else 0)

    return on_output
