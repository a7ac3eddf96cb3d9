"""The engine model `tensorrt_llm` directly, with token ids, over gRPC streaming.

    locust -f loadtest/engine_direct.py --headless -H 127.0.0.1:8001 -u 4 -t 60s --workload 128/128

Run it beside grpc_stream.py with the same workload: the difference is what tokenization,
detokenization and the ensemble cost.
"""

from tritonllm.loadtest import locust_plugin  # noqa: F401  (options, samples, reports)
from tritonllm.loadtest.grpc_users import GrpcEngineUser

__all__ = ["GrpcEngineUser"]
