"""The client's exceptions and the one place that maps transport failures onto them.

The tree is drawn in the package docstring (:mod:`tritonllm.client`).
"""

from __future__ import annotations

import builtins

from tritonllm.contract import TIMEOUT_MARK, is_busy_message


class TritonLLMError(Exception):
    """Base of every error the client raises; no tritonclient, grpc, requests or aiohttp
    exception leaves the client."""


class ServerError(TritonLLMError):
    """The server answered with an error.

    ``message`` is the server's own text. ``http_status`` (HTTP) or ``grpc_code`` (gRPC status
    name such as ``"INVALID_ARGUMENT"``) says how it was answered; either may be None: Triton
    reports errors that happen while it admits a gRPC stream request without a status code.
    """

    def __init__(self, message: str, *, http_status: int | None = None,
                 grpc_code: str | None = None):
        super().__init__(message)
        self.message = message
        self.http_status = http_status
        self.grpc_code = grpc_code

    def __str__(self) -> str:
        how = self.http_status if self.http_status is not None else self.grpc_code
        return self.message if how is None else f"[{how}] {self.message}"


class InvalidRequestError(ServerError):
    """The server refused the request itself (HTTP 400, gRPC INVALID_ARGUMENT): fix the request;
    the message names the field and the limit."""


class ServerBusyError(ServerError):
    """The server refused the request for now (its queue is full: HTTP 503, gRPC UNAVAILABLE or
    an in-band "Exceeds maximum queue size"); nothing ran. Retry later, with backoff."""


class ConnectionError(TritonLLMError, builtins.ConnectionError):
    """The server could not be reached, or the connection broke (gRPC UNAVAILABLE)."""


class TimeoutError(TritonLLMError, builtins.TimeoutError):
    """The request took longer than the client's ``timeout`` (gRPC DEADLINE_EXCEEDED), or the
    server ended it at its own per-request timeout."""


_INVALID_HTTP_STATUSES = frozenset({400, 422})
_INVALID_GRPC_CODES = frozenset({"INVALID_ARGUMENT", "OUT_OF_RANGE"})
_INTERNAL_MARK = "internal error"  # tritonllm.models.triton.error() marks our own failures


def error_from_http(status: int, message: str) -> ServerError:
    """The exception for an HTTP error answer: 400/422 are the request's fault; 503 or a
    busy message (a full queue; Triton 2.51's generate answers it with 400) means retry
    later."""
    if status == 503 or is_busy_message(message):
        return ServerBusyError(message, http_status=status)
    cls = InvalidRequestError if status in _INVALID_HTTP_STATUSES else ServerError
    return cls(message, http_status=status)


def error_from_grpc(code: str | None, message: str) -> TritonLLMError:
    """The exception for a gRPC failure, given the status code's name (None: in-band error).

    Errors of a request on a stream come in-band, without a code: Triton's opt-in status mode
    (the ``triton_grpc_error`` header) crashed Triton 2.51 here, so it is not used. In-band
    errors are the request's fault (Triton refusing it at admission, or our models' messages
    naming a field), except our server's own failures, which it marks ``internal error``.
    """
    if is_busy_message(message):
        return ServerBusyError(message, grpc_code=code)
    if TIMEOUT_MARK in message:
        return TimeoutError(message)
    if code == "UNAVAILABLE":
        return ConnectionError(message)
    if code == "DEADLINE_EXCEEDED":
        return TimeoutError(message)
    if code is None and _INTERNAL_MARK in message:
        return ServerError(message)
    if code is None or code in _INVALID_GRPC_CODES:
        return InvalidRequestError(message, grpc_code=code)
    return ServerError(message, grpc_code=code)
