"""Sweeps: the same run at several concurrencies (closed loop) or request rates (open loop),
then one table and one throughput-vs-latency plot.

Output directory: ``step-<label>/`` per step (a full run report each), ``sweep.json`` (one
point per step: label, users, request_rate, throughputs, latency distributions), ``sweep.md``
and ``throughput_vs_latency.png``.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from tritonllm.loadtest.report import load_summary
from tritonllm.loadtest.runner import LocustRun, execute


def parse_values(text: str, field: str, kind=float) -> list:
    """``"1,2,4"`` -> ``[1, 2, 4]``; each value must be > 0."""
    try:
        values = [kind(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"{field}: {text!r} is not a comma-separated list of numbers") from None
    if not values or any(v <= 0 for v in values):
        raise ValueError(f"{field}: needs one or more values > 0, got {text!r}")
    return values


def steps(base: LocustRun, concurrency: list[int] | None, rates: list[float] | None):
    """(label, run) per sweep step, each writing into its own folder under ``base.out_dir``."""
    if bool(concurrency) == bool(rates):
        raise ValueError("sweep: give exactly one of concurrency (closed loop) or rates (open loop)")
    root = Path(base.out_dir)
    if concurrency:
        return [(f"u{u}", dataclasses.replace(base, users=u, request_rate=0.0, label=f"u{u}",
                                              out_dir=str(root / f"step-u{u}")))
                for u in concurrency]
    return [(f"r{r:g}", dataclasses.replace(base, request_rate=r, label=f"{r:g} req/s",
                                            out_dir=str(root / f"step-r{r:g}")))
            for r in rates]


def point(label: str, run: LocustRun, doc: dict) -> dict:
    s = doc["summary"]
    return {"label": label, "users": run.users, "request_rate": run.request_rate,
            "requests": s["requests"], "failed": s["failed"],
            "request_throughput": s["request_throughput"],
            "output_token_throughput": s["output_token_throughput"],
            "goodput": (doc.get("slo") or {}).get("goodput"),
            "latency_ms": s["latency_ms"]}


def run_sweep(base: LocustRun, concurrency=None, rates=None) -> list[dict]:
    """Run every step (a failed step is reported and skipped), then write the sweep files."""
    points = []
    for label, run in steps(base, concurrency, rates):
        code = execute(run)
        summary = Path(run.out_dir) / "summary.json"
        if not summary.is_file():
            print(f"[tritonllm] step {label}: no summary (exit code {code}); skipped")
            continue
        points.append(point(label, run, load_summary(summary)))
    write_sweep(points, Path(base.out_dir))
    return points


def sweep_markdown(points: list[dict]) -> str:
    lines = ["| step | users | req rate | requests | failed | req/s | goodput | output tok/s | "
             "TTFT p50 | TTFT p90 | TPOT p50 | TPOT p90 | E2E p50 | E2E p90 |",
             "|---" * 14 + "|"]
    for p in points:
        lat = p["latency_ms"]
        cells = [lat[m][q] for m in ("ttft", "tpot", "e2e") for q in ("p50", "p90")]
        goodput = "–" if p["goodput"] is None else f"{p['goodput']:.3f}"
        lines.append(
            f"| {p['label']} | {p['users']} | {p['request_rate'] or 'closed'} | {p['requests']} | "
            f"{p['failed']} | {p['request_throughput']:.3f} | {goodput} | "
            f"{p['output_token_throughput']:.2f} | "
            + " | ".join("–" if c is None else f"{c:.1f}" for c in cells) + " |")
    return "Latencies in ms; goodput in requests/s meeting the SLO.\n\n" + "\n".join(lines) + "\n"


def write_sweep(points: list[dict], out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "sweep.json").write_text(json.dumps(points, indent=2) + "\n")
    (out_dir / "sweep.md").write_text(sweep_markdown(points))
    if points:
        from tritonllm.loadtest.plots import plot_throughput_vs_latency

        plot_throughput_vs_latency(points, out_dir / "throughput_vs_latency.png")
