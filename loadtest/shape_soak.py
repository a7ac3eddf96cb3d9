"""Load shape "soak": `users` for a long `duration` after a `ramp`.

Combine it with any user locustfile (Locust merges comma-separated files):

    locust -f loadtest/http_stream.py,loadtest/shape_soak.py --headless -H http://127.0.0.1:8000 \
        --shape-params users=4,ramp=60s,duration=60m
"""

from tritonllm.loadtest.locust_shapes import SoakShape


class Soak(SoakShape):
    """Parameters: see tritonllm.loadtest.shapes.Soak."""
