"""Evaluate the dashboard's queries over a list of ``/metrics`` scrapes, as Prometheus would:
``rate`` = increase over the window / its seconds, ``histogram_quantile`` = linear
interpolation inside the bucket that holds the rank (the highest finite bound when the rank
falls in ``+Inf``), ``sum`` over every series of the metric.

A scrape is ``(t_seconds, {'name{labels}': value})`` (``tritonllm.serve.metrics.scrape``).
"""

from __future__ import annotations

import math
import re

_LABEL = re.compile(r'(\w+)="([^"]*)"')

Scrape = tuple[float, dict]


def labels(series: str) -> dict[str, str]:
    return dict(_LABEL.findall(series.partition("{")[2]))


def _by(samples: dict, metric: str, label: str) -> dict[str, float]:
    """Sum of ``metric``'s series grouped by ``label`` ('' groups all)."""
    groups: dict[str, float] = {}
    for series, value in samples.items():
        if series.partition("{")[0] == metric:
            key = labels(series).get(label, "") if label else ""
            groups[key] = groups.get(key, 0.0) + value
    return groups


def gauge(scrape: Scrape, metric: str) -> float | None:
    values = _by(scrape[1], metric, "")
    return values.get("")


def increases(old: Scrape, new: Scrape, metric: str, by: str = "") -> dict[str, float]:
    """Increase of counter ``metric`` between two scrapes, per ``by`` label value."""
    before = _by(old[1], metric, by)
    return {key: max(value - before.get(key, 0.0), 0.0)
            for key, value in _by(new[1], metric, by).items()}


def rates(old: Scrape, new: Scrape, metric: str, by: str = "") -> dict[str, float]:
    """Per-second increase of ``metric`` between two scrapes (at different times)."""
    seconds = new[0] - old[0]
    return {key: value / seconds for key, value in increases(old, new, metric, by).items()}


def ratio(old: Scrape, new: Scrape, metric: str, per: str) -> float | None:
    """The summed increase of ``metric`` over that of ``per`` between the scrapes (None when
    ``per`` did not move: Prometheus' division by zero, a gap in the graph)."""
    denominator = sum(increases(old, new, per).values())
    if denominator <= 0:
        return None
    return sum(increases(old, new, metric).values()) / denominator


def histogram_quantile(q: float, old: Scrape, new: Scrape, metric: str) -> float | None:
    """The ``q`` quantile of the observations made between the scrapes (None when none)."""
    increase = increases(old, new, f"{metric}_bucket", by="le")
    buckets = sorted((float(le), count) for le, count in increase.items())
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    lower, below = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                return lower
            width = count - below
            return lower + (bound - lower) * ((rank - below) / width if width else 1.0)
        lower, below = bound, count
    return lower


def evaluate(query, scrapes: list[Scrape], window_s: float) -> dict[str, list]:
    """``{legend: [(t, value), ...]}`` for a :class:`~tritonllm.deploy.dashboard.Query`."""
    out: dict[str, list] = {}
    for i, new in enumerate(scrapes):
        if query.kind == "gauge":
            value = gauge(new, query.metric)
            if value is not None:
                out.setdefault(query.legend, []).append((new[0], value))
            continue
        old = _window_start(scrapes, i, window_s)
        if old is None:
            continue
        if query.kind in ("quantile", "ratio"):
            value = (histogram_quantile(query.q, old, new, query.metric)
                     if query.kind == "quantile" else ratio(old, new, query.metric, query.per))
            if value is not None:
                out.setdefault(query.legend, []).append((new[0], value))
        else:
            for key, value in rates(old, new, query.metric, query.by).items():
                legend = query.legend.replace("{{%s}}" % query.by, key) if query.by else (
                    query.legend)
                out.setdefault(legend, []).append((new[0], value))
    return out


def _window_start(scrapes: list[Scrape], i: int, window_s: float) -> Scrape | None:
    """The latest scrape at least ``window_s`` before scrape ``i`` (the first when the
    series is younger than the window but spans two scrapes)."""
    t = scrapes[i][0]
    earlier = [s for s in scrapes[:i] if s[0] <= t - window_s]
    return earlier[-1] if earlier else (scrapes[0] if i > 0 else None)
