"""Where the frontend listens, which Triton it talks to, and what it serves."""

from __future__ import annotations

from dataclasses import dataclass

from tritonllm.defaults import GRPC_PORT, OPENAI_PORT
from tritonllm.model_source import DEFAULT_MODEL_NAME

DEFAULT_PORT = OPENAI_PORT
DEFAULT_MAX_BODY_BYTES = 1 << 20  # 1 MiB: ~250k tokens of prompt, far over any context here


@dataclass(frozen=True, kw_only=True)
class FrontendSettings:
    """``triton_url``: Triton's gRPC ``host:port``; ``triton_model``: the ensemble to call;
    ``model_name``: the model id clients send (``GET /v1/models`` lists it);
    ``default_max_tokens``: new tokens at most when a request names no limit (OpenAI's own
    default is the rest of the context; a CPU engine needs a bound); ``request_timeout_s``:
    a request's limit in all (None: none); ``host``: the address to bind (loopback unless
    asked); ``max_body_bytes``: larger request bodies get 413; ``decoupled``: whether the
    deployment streams (tensorrtllm_backend's ``decoupled_mode``); when false, each request
    asks the ensemble for one whole response and a streamed request gets its text in one
    chunk. ``tokenizer``: the model's tokenizer directory, for the text of each token in
    ``logprobs`` ("" : none; requests for log probabilities are then refused)."""

    triton_url: str = f"localhost:{GRPC_PORT}"
    triton_model: str = "ensemble"
    model_name: str = DEFAULT_MODEL_NAME
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    default_max_tokens: int = 1024
    request_timeout_s: float | None = 600.0
    decoupled: bool = True
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    tokenizer: str = ""

    def __post_init__(self) -> None:
        for name in ("triton_url", "triton_model", "model_name", "host"):
            if not getattr(self, name):
                raise ValueError(f"{name}: must not be empty")
        if not 0 < self.port < 65536:
            raise ValueError(f"port: must be in [1, 65535], got {self.port}")
        if self.max_body_bytes < 1:
            raise ValueError(f"max_body_bytes: must be >= 1, got {self.max_body_bytes}")
        if self.default_max_tokens < 1:
            raise ValueError(f"default_max_tokens: must be >= 1, got {self.default_max_tokens}")
        if self.request_timeout_s is not None and not self.request_timeout_s > 0:
            raise ValueError(f"request_timeout_s: must be > 0 or None, got "
                             f"{self.request_timeout_s}")

    @property
    def url(self) -> str:
        host = "localhost" if self.host in ("0.0.0.0", "::") else self.host
        return f"http://{host}:{self.port}"
