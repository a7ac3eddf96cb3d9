"""Streaming gRPC: the ensemble over tritonclient's bidirectional stream.

    locust -f loadtest/grpc_stream.py --headless -H 127.0.0.1:8001 -u 4 -t 60s --workload 128/128
"""

from tritonllm.loadtest import locust_plugin  # noqa: F401  (options, samples, reports)
from tritonllm.loadtest.grpc_users import GrpcStreamUser

__all__ = ["GrpcStreamUser"]
