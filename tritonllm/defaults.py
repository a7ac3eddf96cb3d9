"""Defaults that several parts of the project share, each defined here once. No imports, so
any module (and the Makefile, through the CLI) can use them without pulling anything in."""

HTTP_PORT = 8000  # Triton's HTTP/REST
GRPC_PORT = 8001  # Triton's gRPC
METRICS_PORT = 8002  # Triton's Prometheus metrics
OPENAI_PORT = 9000  # the OpenAI-compatible frontend (the port Triton's own frontend uses)
TRITON_PORTS = {"http": HTTP_PORT, "grpc": GRPC_PORT, "metrics": METRICS_PORT}

# CPU engine step: stop a streamed request whose responses postprocessing has not received for
# this long (its ensemble was cancelled; see tritonllm.models.delivery). 0: off.
ABANDONED_STREAM_TIMEOUT_MS = 1500

DEFAULT_WORKLOAD = "128/128"  # load tests: prompt/output tokens (a published benchmark shape)
