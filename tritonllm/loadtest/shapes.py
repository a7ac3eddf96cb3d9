"""Load shapes: how many users run over time (ramp, step, spike, soak).

Each shape is a pure function of elapsed seconds (``users_at``), configured by a frozen
dataclass parsed from ``--shape-params`` (``key=value`` pairs; durations take a unit:
``30s``, ``2m``, ``500ms``). ``tritonllm.loadtest.locust_shapes`` adapts them to Locust's
``LoadTestShape``; the thin files ``loadtest/shape_*.py`` expose one each. No Locust import here.

- ramp: 0 -> ``users`` linearly over ``ramp``, then ``hold``.
- step: ``start`` users, plus ``step`` users every ``every``, up to ``users``, then ``hold``.
- spike: ``base`` users; from ``at`` for ``length``, ``peak`` users; ``duration`` in total.
- soak: ``users`` for ``duration`` after a ``ramp`` (a long run to expose leaks and drift).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from tritonllm.loadtest.slo import parse_duration


def parse_params(cls, spec: str):
    """``"users=4,ramp=30s"`` -> ``cls(users=4, ramp=30.0)`` (ints and durations)."""
    known = {f.name: f.type for f in fields(cls)}
    values = {}
    for item in filter(None, (p.strip() for p in spec.split(","))):
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or key not in known:
            raise ValueError(f"shape_params: {item!r} is not key=value with a key of the "
                             f"{cls.__name__} shape: {', '.join(known)}")
        values[key] = _value(cls.__name__, key, value.strip(), known[key])
    return cls(**values)


def _value(shape: str, key: str, text: str, type_name: str):
    if type_name == "int":
        try:
            return int(text)
        except ValueError:
            raise ValueError(f"{shape}.{key}: {text!r} is not an integer") from None
    return parse_duration(text, f"{shape}.{key}")


def _positive(shape, **values) -> None:
    for name, value in values.items():
        if value < 0:
            raise ValueError(f"{type(shape).__name__}.{name}: must be >= 0, got {value}")


@dataclass(frozen=True)
class Ramp:
    users: int = 4
    ramp: float = 30.0
    hold: float = 30.0

    def __post_init__(self) -> None:
        _positive(self, ramp=self.ramp, hold=self.hold)
        if self.users < 1:
            raise ValueError(f"Ramp.users: must be >= 1, got {self.users}")

    def users_at(self, t: float) -> int | None:
        if t >= self.ramp + self.hold:
            return None
        if t >= self.ramp:
            return self.users
        return max(1, int(self.users * t / self.ramp)) if self.ramp else self.users


@dataclass(frozen=True)
class Step:
    start: int = 1
    step: int = 1
    every: float = 20.0
    users: int = 4
    hold: float = 20.0

    def __post_init__(self) -> None:
        _positive(self, every=self.every, hold=self.hold)
        if not 1 <= self.start <= self.users or self.step < 1 or self.every <= 0:
            raise ValueError(f"Step: need 1 <= start <= users, step >= 1, every > 0; got {self}")

    @property
    def duration(self) -> float:
        steps = -(-(self.users - self.start) // self.step)  # ceil
        return steps * self.every + self.hold

    def users_at(self, t: float) -> int | None:
        if t >= self.duration:
            return None
        return min(self.users, self.start + self.step * int(t // self.every))


@dataclass(frozen=True)
class Spike:
    base: int = 1
    peak: int = 8
    at: float = 20.0
    length: float = 10.0
    duration: float = 60.0

    def __post_init__(self) -> None:
        _positive(self, at=self.at, length=self.length)
        if not 1 <= self.base <= self.peak or self.duration < self.at + self.length:
            raise ValueError(f"Spike: need 1 <= base <= peak and duration >= at + length; "
                             f"got {self}")

    def users_at(self, t: float) -> int | None:
        if t >= self.duration:
            return None
        return self.peak if self.at <= t < self.at + self.length else self.base


@dataclass(frozen=True)
class Soak:
    users: int = 4
    ramp: float = 60.0
    duration: float = 3600.0

    def __post_init__(self) -> None:
        _positive(self, ramp=self.ramp)
        if self.users < 1 or self.duration <= self.ramp:
            raise ValueError(f"Soak: need users >= 1 and duration > ramp; got {self}")

    def users_at(self, t: float) -> int | None:
        return Ramp(self.users, self.ramp, self.duration - self.ramp).users_at(t)
