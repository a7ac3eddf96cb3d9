"""The Grafana dashboard's panels as one PNG, from a real server's ``/metrics`` (no Grafana or
Prometheus needed): scrape the engine's and the frontend's metrics every ``--interval`` seconds
while load runs, evaluate each panel's queries as Prometheus would
(:mod:`tritonllm.deploy.promeval`), plot them with matplotlib.

    make serve                                   # terminal 1
    tritonllm loadtest run --user openai ...     # terminal 2, the load
    python -m tritonllm.deploy.dashboard_png --duration 120 --out deploy/grafana/dashboard.png

Scrapes are saved beside the PNG (``*.scrapes.jsonl``) and ``--from-scrapes`` re-plots them.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from tritonllm.defaults import METRICS_PORT, OPENAI_PORT
from tritonllm.deploy.dashboard import PANELS
from tritonllm.deploy.promeval import Scrape, evaluate


def collect(urls: list[str], duration_s: float, interval_s: float) -> list[Scrape]:
    """Scrape every URL each ``interval_s`` for ``duration_s``; samples of all URLs merged."""
    from tritonllm.serve.metrics import scrape

    scrapes, start = [], time.monotonic()
    while time.monotonic() - start <= duration_s:
        t = time.monotonic() - start
        samples = {}
        for url in urls:
            samples.update(scrape(url))
        scrapes.append((t, samples))
        time.sleep(max(0.0, interval_s - (time.monotonic() - start - t)))
    return scrapes


def plot(scrapes: list[Scrape], window_s: float, path: Path, title: str = "") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = (len(PANELS) + 1) // 2
    fig, axes = plt.subplots(rows, 2, figsize=(13, 2.6 * rows), sharex=True)
    for ax, panel in zip(axes.flat, PANELS):
        for query in panel.queries:
            for legend, points in evaluate(query, scrapes, window_s).items():
                ax.plot([t for t, _ in points], [_scaled(v, panel.unit) for _, v in points],
                        label=legend)
        ax.set_title(panel.title, fontsize=10)
        ax.set_ylabel(_unit_label(panel.unit), fontsize=8)
        if ax.lines:
            ax.legend(fontsize=7, loc="upper left")
    for ax in axes[-1]:
        ax.set_xlabel("seconds since the first scrape")
    fig.suptitle(title or f"tritonllm (rates over {window_s:g} s windows)", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _scaled(value: float, unit: str) -> float:
    return value * 1000 if unit == "s" else value * 100 if unit == "percentunit" else value


def _unit_label(unit: str) -> str:
    return {"s": "ms", "percentunit": "%", "reqps": "req/s", "short": ""}.get(unit, unit)


def save_scrapes(scrapes: list[Scrape], path: Path) -> None:
    path.write_text("".join(json.dumps({"t": t, "samples": s}) + "\n" for t, s in scrapes))


def load_scrapes(path: Path) -> list[Scrape]:
    return [(d["t"], d["samples"]) for d in map(json.loads, path.read_text().splitlines())]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tritonllm.deploy.dashboard_png",
                                description=__doc__.splitlines()[0])
    p.add_argument("--metrics-url", action="append", default=None,
                   help=f"a /metrics URL (repeatable); default Triton :{METRICS_PORT} and the "
                        f"frontend :{OPENAI_PORT}")
    p.add_argument("--duration", type=float, default=120.0, help="seconds to scrape")
    p.add_argument("--interval", type=float, default=2.0, help="seconds between scrapes")
    p.add_argument("--window", type=float, default=10.0, help="rate window, seconds")
    p.add_argument("--from-scrapes", type=Path, help="re-plot saved scrapes instead")
    p.add_argument("--title", default="")
    p.add_argument("--out", type=Path, default=Path("dashboard.png"))
    args = p.parse_args(argv)
    if args.from_scrapes:
        scrapes = load_scrapes(args.from_scrapes)
    else:
        urls = args.metrics_url or [f"http://127.0.0.1:{METRICS_PORT}/metrics",
                                    f"http://127.0.0.1:{OPENAI_PORT}/metrics"]
        scrapes = collect(urls, args.duration, args.interval)
        save_scrapes(scrapes, args.out.with_suffix(".scrapes.jsonl"))
    print(f"wrote {plot(scrapes, args.window, args.out, args.title)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
