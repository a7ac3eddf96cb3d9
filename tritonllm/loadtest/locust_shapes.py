"""Locust ``LoadTestShape`` classes over the pure shapes of ``tritonllm.loadtest.shapes``.

Parameters come from ``--shape-params`` (see ``tritonllm.loadtest.options``); users are started
or stopped at once (spawn rate = the user count), so each stage begins on time.
"""

from __future__ import annotations

from locust import LoadTestShape

from tritonllm.loadtest.shapes import Ramp, Soak, Spike, Step, parse_params


class ParamShape(LoadTestShape):
    """Adapts a shape dataclass (``config_class``) to Locust."""

    abstract = True
    config_class: type = Ramp

    def config(self):
        spec = getattr(self.runner.environment.parsed_options, "shape_params", "") or ""
        return parse_params(self.config_class, spec)

    def tick(self):
        users = self.config().users_at(self.get_run_time())
        return None if users is None else (users, max(users, 1))


class RampShape(ParamShape):
    abstract = True
    config_class = Ramp


class StepShape(ParamShape):
    abstract = True
    config_class = Step


class SpikeShape(ParamShape):
    abstract = True
    config_class = Spike


class SoakShape(ParamShape):
    abstract = True
    config_class = Soak
