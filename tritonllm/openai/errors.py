"""Errors in OpenAI's shape, and the one map from our client's exceptions onto them.

Every error the frontend answers is an :class:`OpenAIError`, sent as
``{"error": {"message", "type", "param", "code"}}`` with its HTTP status:

    400 invalid_request_error   bad JSON, a bad or unsupported field (``param`` names it),
                                or the server refused the request (a limit, named)
    404 not_found_error         unknown model (``param`` = "model") or path
    503 service_unavailable     Triton or the ensemble is not ready or cannot be reached, or
                                the engine's queue is full (retry later)
    500 internal_error          the server failed while answering
"""

from __future__ import annotations

import re

from tritonllm.client import (ConnectionError, InvalidRequestError, ServerBusyError, TimeoutError,
                              TritonLLMError)


class OpenAIError(Exception):
    """An answer in OpenAI's error shape: ``status`` (HTTP), ``message`` naming the field
    and the limit, ``type``, ``param`` (the request field at fault, or None), ``code``."""

    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param,
                          "code": self.code}}


def invalid(param: str | None, message: str, code: str | None = None) -> OpenAIError:
    """400 for the request field ``param``; ``message`` should name it and the limit."""
    return OpenAIError(400, message, param=param, code=code)


def unsupported(param: str, why: str = "") -> OpenAIError:
    """400 for a field this deployment does not implement."""
    detail = f": {why}" if why else ""
    return OpenAIError(400, f"{param}: not supported by this server{detail}", param=param,
                       code="unsupported_parameter")


def model_not_found(model: str, served: str) -> OpenAIError:
    return OpenAIError(404, f"model: the model {model!r} does not exist; this server serves "
                            f"{served!r}", type="not_found_error", param="model",
                       code="model_not_found")


def unavailable(message: str) -> OpenAIError:
    return OpenAIError(503, message, type="service_unavailable", code="service_unavailable")


# A server message starting with a field name ("max_tokens: prompt (9 tokens) ...") names it;
# Triton puts "in ensemble 'ensemble', " before the message of a step.
_FIELD = re.compile(r"^\s*(?:in ensemble '[^']*',\s*)?([a-z_]+):")


def from_client_error(exc: TritonLLMError, renames: dict[str, str] | None = None) -> OpenAIError:
    """The OpenAI error for a failure of the ensemble request. ``renames``: ensemble input
    name -> the request field that set it (``text_input`` -> ``messages``), so a refusal
    names the field the user sent."""
    if isinstance(exc, InvalidRequestError):
        return _refusal(exc.message, renames or {})
    if isinstance(exc, ServerBusyError):
        return unavailable(f"the inference server is busy: {exc.message}")
    if isinstance(exc, ConnectionError):
        return unavailable(f"the inference server cannot be reached: {exc}")
    if isinstance(exc, TimeoutError):
        return OpenAIError(504, f"the inference server did not answer in time: {exc}",
                           type="timeout", code="timeout")
    return OpenAIError(500, f"the inference server failed: {exc}", type="internal_error",
                       code="internal_error")


# Triton's refusal of an input the deployed ensemble does not declare (an extension of ours
# that the GPU deployment lacks, such as num_top_log_probs).
_UNDECLARED = re.compile(r"unexpected inference input '([A-Za-z_]+)'")


def _refusal(message: str, renames: dict[str, str]) -> OpenAIError:
    undeclared = _UNDECLARED.search(message)
    if undeclared and undeclared.group(1) in renames:
        param = renames[undeclared.group(1)]
        return unsupported(param, f"this deployment's ensemble has no input "
                                  f"{undeclared.group(1)!r} (TensorRT-LLM's backend returns the "
                                  "chosen token's log probability only)"
                           if param in ("top_logprobs", "logprobs") else
                           f"this deployment's ensemble has no input {undeclared.group(1)!r}")
    match = _FIELD.match(message)
    if not match:
        return invalid(None, message)
    param = renames.get(match.group(1), match.group(1))
    return invalid(param, f"{param}:{message[match.end():]}")
