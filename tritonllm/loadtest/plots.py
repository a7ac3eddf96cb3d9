"""PNG plots with matplotlib's Agg backend (no display needed).

- ``ttft_itl.png``: TTFT and pooled ITL histograms (streamed requests).
- ``latency_over_time.png``: each request's E2E and TTFT against when it was sent.
- ``throughput_over_time.png``: output tokens/s and completed requests/s in 1-second bins;
  a chunk's tokens count at its arrival time (tokens the server reported without a chunk of
  text count at the request's end).
- ``throughput_vs_latency.png`` (sweeps): output tokens/s against TTFT, TPOT and E2E
  percentiles, one point per sweep step.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tritonllm.loadtest.metrics import RequestRecord, window


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def run_plots(records: list[RequestRecord], out_dir: Path) -> list[Path]:
    """Write the three run plots into ``out_dir``; return their paths."""
    ok = [r for r in records if r.ok]
    return [plot_distributions(ok, out_dir / "ttft_itl.png"),
            plot_latency_over_time(records, out_dir / "latency_over_time.png"),
            plot_throughput_over_time(ok, window(records)[0], out_dir / "throughput_over_time.png")]


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    _pyplot().close(fig)
    return path


def plot_distributions(ok: list[RequestRecord], path: Path) -> Path:
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    series = [("TTFT", [r.ttft * 1000 for r in ok if r.ttft is not None]),
              ("ITL (pooled chunk gaps)", [g * 1000 for r in ok for g in r.itl])]
    for ax, (title, values) in zip(axes, series):
        if values:
            ax.hist(values, bins=min(50, max(5, len(values) // 4)), color="tab:blue")
            for q, style in ((50, "--"), (99, ":")):
                ax.axvline(np.percentile(values, q), color="k", linestyle=style, label=f"p{q}")
            ax.legend()
        else:
            ax.text(0.5, 0.5, "no streamed samples", ha="center", transform=ax.transAxes)
        ax.set_title(f"{title}, n={len(values)}")
        ax.set_xlabel("ms")
        ax.set_ylabel("count")
    return _save(fig, path)


def plot_latency_over_time(records: list[RequestRecord], path: Path) -> Path:
    plt = _pyplot()
    t0 = window(records)[0]
    fig, ax = plt.subplots(figsize=(10, 4))
    ok = [r for r in records if r.ok]
    ax.scatter([r.start - t0 for r in ok], [r.e2e * 1000 for r in ok], s=10, label="E2E")
    streamed = [r for r in ok if r.ttft is not None]
    ax.scatter([r.start - t0 for r in streamed], [r.ttft * 1000 for r in streamed], s=10,
               label="TTFT")
    failed = [r for r in records if not r.ok]
    if failed:
        ax.scatter([r.start - t0 for r in failed], [r.e2e * 1000 for r in failed], s=16,
                   marker="x", color="red", label="failed")
    ax.set_xlabel("request sent at (s since start)")
    ax.set_ylabel("latency (ms)")
    ax.set_title("Latency over time")
    ax.legend()
    return _save(fig, path)


def token_arrivals(ok: list[RequestRecord], t0: float) -> tuple[np.ndarray, np.ndarray]:
    """(times in s since ``t0``, tokens) of every chunk, plus unattributed tokens at the end."""
    times, tokens = [], []
    for r in ok:
        counts = r.chunk_tokens or ((1,) * len(r.chunk_times) if r.output_tokens else ())
        times += [r.start - t0 + t for t in r.chunk_times[:len(counts)]]
        tokens += list(counts)
        rest = (r.output_tokens or 0) - sum(counts)
        if rest > 0:
            times.append(r.start - t0 + r.end)
            tokens.append(rest)
    return np.asarray(times, dtype=float), np.asarray(tokens, dtype=float)


def plot_throughput_over_time(ok: list[RequestRecord], t0: float, path: Path) -> Path:
    plt = _pyplot()
    times, tokens = token_arrivals(ok, t0)
    ends = np.asarray([r.start - t0 + r.end for r in ok], dtype=float)
    last = max(times.max() if times.size else 0.0, ends.max() if ends.size else 0.0)
    bins = np.arange(0.0, np.floor(last) + 2.0)
    fig, ax = plt.subplots(figsize=(10, 4))
    ax.step(bins[:-1], np.histogram(times, bins, weights=tokens)[0], where="post",
            label="output tokens/s")
    ax.set_xlabel("time (s since start)")
    ax.set_ylabel("output tokens/s")
    right = ax.twinx()
    right.step(bins[:-1], np.histogram(ends, bins)[0], where="post", color="tab:orange",
               label="requests/s")
    right.set_ylabel("completed requests/s")
    ax.set_title("Throughput over time (1 s bins)")
    handles = ax.get_legend_handles_labels()[0] + right.get_legend_handles_labels()[0]
    ax.legend(handles=handles, loc="lower left")
    return _save(fig, path)


def _num(value) -> float:
    return float("nan") if value is None else float(value)


def plot_throughput_vs_latency(points: list[dict], path: Path) -> Path:
    """``points``: one dict per sweep step with ``label``, ``output_token_throughput`` and
    ``latency_ms`` (the summary's distributions as dicts)."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    x = [p["output_token_throughput"] for p in points]
    for ax, (key, title) in zip(axes, (("ttft", "TTFT"), ("tpot", "TPOT"), ("e2e", "E2E"))):
        for q, marker in (("p50", "o-"), ("p90", "s--"), ("p99", "^:")):
            ax.plot(x, [_num(p["latency_ms"][key][q]) for p in points], marker, label=q)
        for xi, p in zip(x, points):
            ax.annotate(p["label"], (xi, _num(p["latency_ms"][key]["p50"])),
                        textcoords="offset points", xytext=(4, 4), fontsize=8)
        ax.set_xlabel("output tokens/s")
        ax.set_ylabel(f"{title} (ms)")
        ax.set_title(f"{title} vs throughput")
        ax.legend()
    return _save(fig, path)
