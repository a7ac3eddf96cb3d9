"""One probe: a candidate under open-loop load at one request rate, judged against the SLO.

``passed`` is the SLO gate of :mod:`tritonllm.loadtest.slo` (good requests / all >= attainment).
``goodput`` is the request rate that met the SLO: the arrival rate times the share of good
requests (per second of offered load, not of the run's window, so the drain after a short
probe does not count against a candidate); ``good_token_rate`` is that rate times the good
requests' mean output tokens. ``broken`` says, per SLO limit, the share of requests that broke
it, plus ``failed`` (errors and refusals): the largest share is the constraint that binds.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from tritonllm.loadtest.metrics import RequestRecord, summarize
from tritonllm.loadtest.slo import Slo, evaluate

FAILED = "failed"  # the ``broken`` entry for requests that errored or were refused


@dataclass(frozen=True)
class Probe:
    rate: float
    passed: bool
    goodput: float
    good_token_rate: float
    attainment: float
    requests: int
    p95_ms: dict[str, float | None] = field(default_factory=dict)
    broken: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0  # wall time the probe took (the server's start included, if it had one)
    run_dir: str = ""

    @property
    def binding(self) -> str | None:
        """The limit (or ``failed``) most requests broke; None when nothing broke."""
        worst = max(self.broken.items(), key=lambda item: item[1], default=(None, 0.0))
        return worst[0] if worst[1] > 0 else None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Probe":
        return cls(**data)


def from_records(records: list[RequestRecord], slo: Slo, rate: float, seconds: float = 0.0,
                 run_dir: str = "") -> Probe:
    """Judge one run's requests against ``slo``."""
    summary = summarize(records)
    result = evaluate(slo, records, summary.window_s)
    good = [r for r in records if slo.is_good(r)]
    total = len(records) or 1
    goodput = rate * result.attainment
    broken = {name: sum(1 for r in records if r.ok and not Slo({name: limit}).is_good(r)) / total
              for name, limit in slo.limits.items()}
    broken[FAILED] = sum(1 for r in records if not r.ok) / total
    latency = summary.to_dict()["latency_ms"]
    mean_tokens = sum(r.output_tokens or 0 for r in good) / len(good) if good else 0.0
    return Probe(rate=rate, passed=result.passed, goodput=goodput,
                 good_token_rate=goodput * mean_tokens,
                 attainment=result.attainment, requests=len(records),
                 p95_ms={name: (latency.get(name) or {}).get("p95") for name in slo.limits},
                 broken=broken, seconds=seconds, run_dir=run_dir)
