"""Streaming HTTP: POST /v2/models/ensemble/generate_stream (Server-Sent Events).

    locust -f loadtest/http_stream.py --headless -H http://127.0.0.1:8000 -u 4 -t 60s \
        --workload 128/128 --slo ttft=500ms,tpot=50ms

Each event is timed as it arrives: TTFT, time to second token, ITL, TPOT, E2E.
"""

from tritonllm.loadtest import locust_plugin  # noqa: F401  (options, samples, reports)
from tritonllm.loadtest.users import HttpStreamUser

__all__ = ["HttpStreamUser"]
