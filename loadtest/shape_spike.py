"""Load shape "spike": `base` users; `peak` users from `at` for `length`; `duration` in all.

Combine it with any user locustfile (Locust merges comma-separated files):

    locust -f loadtest/http_stream.py,loadtest/shape_spike.py --headless -H http://127.0.0.1:8000 \
        --shape-params base=1,peak=8,at=20s,length=10s,duration=60s
"""

from tritonllm.loadtest.locust_shapes import SpikeShape


class Spike(SpikeShape):
    """Parameters: see tritonllm.loadtest.shapes.Spike."""
