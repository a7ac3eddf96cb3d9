"""Service-level objectives: per-request latency limits, goodput, and the pass/fail gate.

Spec grammar (``--slo``): comma-separated ``key=value`` pairs, e.g.
``ttft=500ms,tpot=50ms`` or ``e2e=2s,attainment=99%``.

- Latency keys: ``ttft``, ``tt2t``, ``itl``, ``tpot``, ``e2e`` (definitions in
  ``tritonllm.loadtest.metrics``); values need a unit: ``us``, ``ms``, ``s`` or ``m``.
  ``itl`` limits a request's LARGEST chunk gap (a stall anywhere breaks the SLO); a streamed
  answer in a single chunk has no gap and meets it.
- ``attainment``: the share of requests that must be good for the run to pass, as ``0.9`` or
  ``90%`` (default 90%).

A request is GOOD when it succeeded and every limited metric is known and within its limit
(a non-streamed request has no TTFT, so it is never good under a ``ttft`` limit).
``goodput`` = good requests / run window. The gate PASSES when at least one request ran and
good / all requests >= attainment; a failed request counts as not good.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from tritonllm.loadtest.metrics import LATENCY_METRICS, RequestRecord

DEFAULT_ATTAINMENT = 0.9
SLO_FAILED_EXIT_CODE = 3  # what a load-test process exits with when its SLO is missed
_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}
_DURATION = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*(us|ms|s|m)\s*$")


def parse_duration(text: str, field_name: str) -> float:
    """``"500ms"`` -> 0.5 (seconds); ValueError naming ``field_name`` otherwise."""
    match = _DURATION.match(text)
    if not match:
        raise ValueError(
            f"{field_name}: {text!r} is not a duration; write a number with a unit "
            f"(us, ms, s, m), e.g. 500ms")
    return float(match.group(1)) * _UNITS[match.group(2)]


def parse_fraction(text: str, field_name: str) -> float:
    """``"90%"`` or ``"0.9"`` -> 0.9, which must lie in (0, 1]."""
    try:
        value = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise ValueError(f"{field_name}: {text!r} is not a number or a percentage") from None
    if not 0 < value <= 1:
        raise ValueError(f"{field_name}: must lie in (0, 1] (or (0%, 100%]), got {text!r}")
    return value


@dataclass(frozen=True)
class Slo:
    """Latency limits in seconds, keyed by metric name, and the required attainment."""

    limits: dict[str, float] = field(default_factory=dict)
    attainment: float = DEFAULT_ATTAINMENT

    def __post_init__(self) -> None:
        unknown = set(self.limits) - set(LATENCY_METRICS)
        if unknown:
            raise ValueError(
                f"slo: unknown metric(s) {sorted(unknown)}; known: {', '.join(LATENCY_METRICS)}")
        for name, limit in self.limits.items():
            if limit <= 0:
                raise ValueError(f"slo.{name}: the limit must be > 0 seconds, got {limit}")
        if not 0 < self.attainment <= 1:
            raise ValueError(f"slo.attainment: must lie in (0, 1], got {self.attainment}")

    @classmethod
    def parse(cls, spec: str) -> "Slo":
        limits, attainment = {}, DEFAULT_ATTAINMENT
        for item in filter(None, (part.strip() for part in spec.split(","))):
            key, sep, value = item.partition("=")
            key = key.strip().lower()
            if not sep:
                raise ValueError(f"slo: {item!r} is not key=value (e.g. ttft=500ms)")
            if key == "attainment":
                attainment = parse_fraction(value.strip(), "slo.attainment")
            else:
                limits[key] = parse_duration(value, f"slo.{key}")
        if not limits:
            raise ValueError(f"slo: {spec!r} sets no latency limit (e.g. ttft=500ms,tpot=50ms)")
        return cls(limits=limits, attainment=attainment)

    def describe(self) -> str:
        parts = [f"{name}<={limit * 1000:g}ms" for name, limit in self.limits.items()]
        return ", ".join(parts) + f", attainment>={self.attainment:.0%}"

    def is_good(self, record: RequestRecord) -> bool:
        return record.ok and all(_within(record, n, lim) for n, lim in self.limits.items())


def _within(record: RequestRecord, name: str, limit: float) -> bool:
    if name == "itl":
        # A streamed answer in one chunk (one token) has no gap to wait through; a request
        # that was not streamed has no known gaps at all.
        gaps = record.itl
        return max(gaps) <= limit if gaps else record.streamed and len(record.chunk_times) == 1
    value = getattr(record, name)
    return value is not None and value <= limit


@dataclass(frozen=True)
class SloResult:
    """How a run fared against an :class:`Slo`."""

    slo: str
    good: int
    total: int
    attainment: float
    required: float
    goodput: float
    passed: bool


def evaluate(slo: Slo, records: list[RequestRecord], window_s: float) -> SloResult:
    """Count good requests, compute goodput over ``window_s`` seconds, decide pass/fail."""
    good = sum(1 for r in records if slo.is_good(r))
    share = good / len(records) if records else 0.0
    return SloResult(
        slo=slo.describe(),
        good=good,
        total=len(records),
        attainment=share,
        required=slo.attainment,
        goodput=good / window_s if window_s > 0 else 0.0,
        passed=bool(records) and share >= slo.attainment,
    )
