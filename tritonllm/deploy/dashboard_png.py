"""The Grafana dashboard's panels as one PNG, from a real server (no Grafana needed): a local
Prometheus (:mod:`tritonllm.deploy.prometheus`) scrapes the engine's and the frontend's
``/metrics`` every ``--interval`` seconds while load runs; each panel's queries are then
evaluated by it over the run and plotted with matplotlib.

    make serve                                   # terminal 1
    tritonllm loadtest run --user openai ...     # terminal 2, the load
    python -m tritonllm.deploy.dashboard_png --duration 120 --out deploy/grafana/dashboard.png

The evaluated series are saved beside the PNG (``*.series.json``); ``--from-series`` re-plots
them.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from tritonllm.defaults import METRICS_PORT, OPENAI_PORT
from tritonllm.deploy.dashboard import PANELS
from tritonllm.deploy.prometheus import Prometheus, Series

# panel title -> its queries' series (times in seconds since the run began)
PanelSeries = dict[str, Series]


def evaluate(prom: Prometheus, start: float, end: float, window_s: float,
             step_s: float) -> PanelSeries:
    """Every panel's queries over ``[start, end]`` (unix times), rates over ``window_s``."""
    window = f"{window_s:g}s"
    panels: PanelSeries = {}
    for panel in PANELS:
        series: Series = {}
        for query in panel.queries:
            for legend, points in prom.query_range(query.promql(window), start, end, step_s,
                                                   legend=query.legend).items():
                series[legend] = [(t - start, v) for t, v in points]
        panels[panel.title] = series
    return panels


def record(urls: list[str], duration_s: float, interval_s: float,
           window_s: float) -> PanelSeries:
    """Run Prometheus over ``urls`` for ``duration_s`` and evaluate the panels."""
    with Prometheus(urls, scrape_interval_s=interval_s) as prom:
        start = time.time()
        while time.time() - start < duration_s:
            time.sleep(min(5.0, duration_s))
            print(f"  {time.time() - start:.0f}/{duration_s:g} s scraped", flush=True)
        prom.wait_for_scrapes(2)
        return evaluate(prom, start, time.time(), window_s, interval_s)


def plot(panels: PanelSeries, path: Path, title: str = "") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = (len(PANELS) + 1) // 2
    fig, axes = plt.subplots(rows, 2, figsize=(13, 2.6 * rows), sharex=True)
    for ax, panel in zip(axes.flat, PANELS):
        for legend, points in panels.get(panel.title, {}).items():
            ax.plot([t for t, _ in points], [_scaled(v, panel.unit) for _, v in points],
                    label=legend)
        ax.set_title(panel.title, fontsize=10)
        ax.set_ylabel(_unit_label(panel.unit), fontsize=8)
        if ax.lines:
            ax.legend(fontsize=7, loc="upper left")
    for ax in axes[-1]:
        ax.set_xlabel("seconds since the run began")
    fig.suptitle(title or "tritonllm", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _scaled(value: float, unit: str) -> float:
    return value * 1000 if unit == "s" else value * 100 if unit == "percentunit" else value


def _unit_label(unit: str) -> str:
    return {"s": "ms", "percentunit": "%", "reqps": "req/s", "short": ""}.get(unit, unit)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tritonllm.deploy.dashboard_png",
                                description=__doc__.splitlines()[0])
    p.add_argument("--metrics-url", action="append", default=None,
                   help=f"a /metrics URL (repeatable); default Triton :{METRICS_PORT} and the "
                        f"frontend :{OPENAI_PORT}")
    p.add_argument("--duration", type=float, default=120.0, help="seconds to scrape")
    p.add_argument("--interval", type=float, default=2.0, help="seconds between scrapes")
    p.add_argument("--window", type=float, default=10.0, help="rate window, seconds")
    p.add_argument("--from-series", type=Path, help="re-plot saved series instead")
    p.add_argument("--title", default="")
    p.add_argument("--out", type=Path, default=Path("dashboard.png"))
    args = p.parse_args(argv)
    if args.from_series:
        panels = json.loads(args.from_series.read_text())
    else:
        urls = args.metrics_url or [f"http://127.0.0.1:{METRICS_PORT}/metrics",
                                    f"http://127.0.0.1:{OPENAI_PORT}/metrics"]
        panels = record(urls, args.duration, args.interval, args.window)
        args.out.with_suffix(".series.json").write_text(json.dumps(panels))
    title = args.title or f"tritonllm (rates over {args.window:g} s windows)"
    print(f"wrote {plot(panels, args.out, title)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
