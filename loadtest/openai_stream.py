"""The OpenAI API, streamed: POST /v1/completions (chat workloads: /v1/chat/completions) on the
OpenAI frontend that `make serve` starts on port 9000.

    locust -f loadtest/openai_stream.py --headless -H http://127.0.0.1:9000 -u 4 -t 60s \
        --workload 128/128 --slo ttft=500ms,tpot=50ms

Each SSE chunk is timed as it arrives (TTFT, ITL, TPOT, E2E); token counts come from the usage
chunk (stream_options.include_usage).
"""

from tritonllm.loadtest import locust_plugin  # noqa: F401  (options, samples, reports)
from tritonllm.loadtest.users import OpenAIStreamUser

__all__ = ["OpenAIStreamUser"]
