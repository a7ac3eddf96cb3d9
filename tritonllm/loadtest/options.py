"""The load test's own command-line options, added to Locust's parser, and their typed form.

Locust passes options it does not know to workers with every spawn message, so these reach
``--processes`` children and remote ``--worker`` processes alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from tritonllm.defaults import DEFAULT_WORKLOAD, METRICS_PORT
from tritonllm.loadtest.slo import Slo
from tritonllm.loadtest.workloads import WorkloadConfig, parse_spec



@dataclass(frozen=True)
class RunOptions:
    """The parsed options; ``workload`` and ``slo`` are validated on construction.

    ``request_rate`` 0 means closed loop (each user sends its next request when the previous
    one ends); above 0, each of the N users is a Poisson process of ``request_rate / N``
    requests/s, whatever the server's speed (open loop).
    """

    workload_spec: str = DEFAULT_WORKLOAD
    model_dir: str = ""
    model: str = ""
    request_rate: float = 0.0
    slo_spec: str = ""
    report_dir: str = ""
    label: str = ""
    request_timeout: float = 600.0
    progress_interval: float = 10.0
    server_metrics: str = ""
    workload: WorkloadConfig = field(init=False)
    slo: Slo | None = field(init=False)

    def __post_init__(self) -> None:
        if self.request_rate < 0:
            raise ValueError(f"request_rate: must be >= 0 requests/s, got {self.request_rate}")
        if self.request_timeout <= 0:
            raise ValueError(f"request_timeout: must be > 0 seconds, got {self.request_timeout}")
        if self.progress_interval < 0:
            raise ValueError(f"progress_interval: must be >= 0 s, got {self.progress_interval}")
        object.__setattr__(self, "workload", parse_spec(self.workload_spec))
        object.__setattr__(self, "slo", Slo.parse(self.slo_spec) if self.slo_spec else None)

    @classmethod
    def from_namespace(cls, ns) -> "RunOptions":
        """From Locust's parsed options (attributes missing there keep their defaults)."""
        names = [f.name for f in fields(cls) if f.init]
        return cls(**{name: getattr(ns, name) for name in names if hasattr(ns, name)})


def add_arguments(parser) -> None:
    """Add our options to Locust's (configargparse) parser; defaults come from RunOptions."""
    d = RunOptions()
    group = parser.add_argument_group("tritonllm", "LLM load-test options (tritonllm)")
    group.add_argument("--workload", dest="workload_spec", default=d.workload_spec,
                       help="IN/OUT tokens (e.g. 128/128), a workload .yaml, a prompts .jsonl, "
                            "or key=value fields (default %(default)s)")
    group.add_argument("--model-dir", default=d.model_dir,
                       help="tokenizer directory of the served model (default: the default model)")
    group.add_argument("--model", default=d.model,
                       help="model to call (default: ensemble; tensorrt_llm for the engine "
                            "user; for the openai user, the id the frontend lists)")
    group.add_argument("--request-rate", type=float, default=d.request_rate,
                       help="open loop: Poisson arrivals at this many requests/s in total, split "
                            "evenly over the -u users (default 0: closed loop)")
    group.add_argument("--slo", dest="slo_spec", default=d.slo_spec,
                       help="per-request SLO, e.g. ttft=500ms,tpot=50ms[,attainment=90%%]; "
                            "the run exits with code 3 when it is missed")
    group.add_argument("--report-dir", default=d.report_dir,
                       help="where summary.json/.md, samples.jsonl and plots go "
                            "(default out/loadtest/run-<time>)")
    group.add_argument("--label", default=d.label, help="a name for this run in reports")
    group.add_argument("--request-timeout", type=float, default=d.request_timeout,
                       help="seconds before a request counts as failed (default %(default)s)")
    group.add_argument("--progress-interval", type=float, default=d.progress_interval,
                       help="seconds between progress lines, 0 for none (default %(default)s)")
    group.add_argument("--server-metrics", default=d.server_metrics,
                       help=f"Triton's metrics URL (e.g. http://127.0.0.1:{METRICS_PORT}"
                            "/metrics): the "
                            "report adds what the engine counted during the run (tokens, "
                            "steps, guided requests, speculative drafts and acceptance)")
    group.add_argument("--shape-params", default="",
                       help="key=value parameters of the load shape, e.g. users=4,ramp=30s")
