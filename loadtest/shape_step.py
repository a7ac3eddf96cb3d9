"""Load shape "step": `start` users, +`step` every `every` up to `users`, then `hold`.

Combine it with any user locustfile (Locust merges comma-separated files):

    locust -f loadtest/http_stream.py,loadtest/shape_step.py --headless -H http://127.0.0.1:8000 \
        --shape-params start=1,step=1,every=20s,users=4,hold=20s
"""

from tritonllm.loadtest.locust_shapes import StepShape


class Step(StepShape):
    """Parameters: see tritonllm.loadtest.shapes.Step."""
