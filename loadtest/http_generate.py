"""Non-streaming HTTP: POST /v2/models/ensemble/generate, one JSON response per request.

    locust -f loadtest/http_generate.py --headless -H http://127.0.0.1:8000 -u 4 -t 60s \
        --workload 128/128

Reports E2E latency, token counts and throughput (no TTFT: nothing streams).
"""

from tritonllm.loadtest import locust_plugin  # noqa: F401  (options, samples, reports)
from tritonllm.loadtest.users import HttpGenerateUser

__all__ = ["HttpGenerateUser"]
