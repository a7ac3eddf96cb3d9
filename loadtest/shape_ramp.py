"""Load shape "ramp": 0 -> users linearly over `ramp`, then `hold`.

Combine it with any user locustfile (Locust merges comma-separated files):

    locust -f loadtest/http_stream.py,loadtest/shape_ramp.py --headless -H http://127.0.0.1:8000 \
        --shape-params users=4,ramp=30s,hold=30s
"""

from tritonllm.loadtest.locust_shapes import RampShape


class Ramp(RampShape):
    """Parameters: see tritonllm.loadtest.shapes.Ramp."""
