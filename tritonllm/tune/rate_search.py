"""The highest request rate a candidate serves within the SLO: bracket, then bisect.

From ``start`` the rate is multiplied by ``factor`` while probes pass (divided while they fail)
until one passing and one failing rate bracket the answer, then the bracket is halved on a log
scale until ``high / low <= 1 + precision``; at most ``max_probes`` probes in all. With a
warm start (the best rate found so far) the first bracket is usually found in two probes.
A rate below ``min_rate`` that still fails ends the search: the candidate meets the SLO at no
rate worth serving.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from tritonllm.tune.probe import Probe


@dataclass(frozen=True)
class RateSearch:
    start: float = 1.0
    factor: float = 2.0
    precision: float = 0.15
    max_probes: int = 6
    min_rate: float = 0.05

    def __post_init__(self) -> None:
        if self.start <= 0 or self.min_rate <= 0:
            raise ValueError(f"rate search: start and min_rate must be > 0 req/s, got "
                             f"{self.start}, {self.min_rate}")
        if self.factor <= 1 or self.precision <= 0:
            raise ValueError(f"rate search: factor must be > 1 and precision > 0, got "
                             f"{self.factor}, {self.precision}")
        if self.max_probes < 2:
            raise ValueError(f"rate search: max_probes must be >= 2, got {self.max_probes}")


@dataclass(frozen=True)
class RateResult:
    """``best``: the passing probe at the highest rate (None: no rate passed); ``above``: the
    lowest failing probe above it (what broke first when pushed further)."""

    probes: tuple[Probe, ...] = field(default_factory=tuple)
    best: Probe | None = None
    above: Probe | None = None

    @property
    def max_rate(self) -> float:
        return self.best.rate if self.best else 0.0

    @property
    def goodput(self) -> float:
        return self.best.goodput if self.best else 0.0


def find_max_rate(measure: Callable[[float], Probe], search: RateSearch) -> RateResult:
    """Run the search with ``measure(rate) -> Probe``."""
    probes: list[Probe] = []
    low: Probe | None = None  # highest passing
    high: Probe | None = None  # lowest failing
    rate = search.start
    while len(probes) < search.max_probes:
        probe = measure(round(rate, 3))
        probes.append(probe)
        if probe.passed and (low is None or probe.rate > low.rate):
            low = probe
        if not probe.passed and (high is None or probe.rate < high.rate):
            high = probe
        if low is None and high is not None and high.rate / search.factor < search.min_rate:
            break
        if low is None:
            rate = high.rate / search.factor
        elif high is None:
            rate = low.rate * search.factor
        elif high.rate / low.rate <= 1 + search.precision:
            break
        else:
            rate = math.sqrt(low.rate * high.rate)
    return RateResult(tuple(probes), low, high)
