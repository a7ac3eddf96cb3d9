"""A soak's results: the summary (a dict, written as JSON), a markdown table and a PNG.

Latency percentiles are over *completed* requests of every kind, grouped by the window in
which they were sent. RSS growth is ``end / baseline - 1`` (see :mod:`.runner` for which
samples those are).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .runner import SoakRun
from .tally import COMPLETED, REJECTED

MB = 1 << 20


def windows(run: SoakRun) -> list[dict]:
    """Per ``window_s`` of send time (no request is sent after ``duration_s``): requests sent,
    completed, rejected, errors, and p50/p99 latency (ms) of the completed ones (None when none
    completed)."""
    width = run.config.window_s
    count = max(1, int(np.ceil(min(run.elapsed_s, run.config.duration_s) / width)))
    rows = []
    for i in range(count):
        inside = [r for r in run.records if i * width <= r.sent_s < (i + 1) * width]
        lat = [r.latency_s * 1000 for r in inside if r.outcome == COMPLETED]
        rows.append({"start_s": i * width, "sent": len(inside), "completed": len(lat),
                     "rejected": sum(r.outcome == REJECTED for r in inside),
                     "errors": sum(r.outcome.startswith("error:") for r in inside),
                     "p50_ms": _pct(lat, 50), "p99_ms": _pct(lat, 99)})
    return rows


def _pct(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 1) if values else None


def rss(run: SoakRun) -> dict:
    """``pid``, ``start_mb``, ``baseline_mb`` (first sample after warm-up), ``end_mb`` (the
    engine idle), ``growth`` (end vs baseline), ``growth_from_start``; values None when the
    server's processes could not be read."""
    points = run.samples.points
    if run.samples.pid is None or len(points) < 2:
        return {"pid": run.samples.pid, "start_mb": None, "baseline_mb": None, "end_mb": None,
                "growth": None, "growth_from_start": None}
    after = [b for t, b in points[:-1] if t >= run.config.warmup_s]
    start, base, end = points[0][1], (after[0] if after else points[-2][1]), points[-1][1]
    return {"pid": run.samples.pid, "start_mb": round(start / MB, 1),
            "baseline_mb": round(base / MB, 1), "end_mb": round(end / MB, 1),
            "growth": round(end / base - 1, 4), "growth_from_start": round(end / start - 1, 4)}


def checks(run: SoakRun, memory: dict) -> dict[str, bool]:
    """The pass criteria: nothing lost, no errors, KV back to full, RSS growth within bound
    (passes, and is reported unmeasured, when the server's processes cannot be read)."""
    t = run.totals
    growth = memory["growth"]
    return {"lost == 0": t["lost"] == 0, "errors == 0": not t["errors"],
            "kv back to full": run.kv_full,
            f"rss growth <= {run.config.max_rss_growth:.0%}":
                growth is None or growth <= run.config.max_rss_growth}


def summarize(run: SoakRun) -> dict:
    memory = rss(run)
    passed = checks(run, memory)
    c, after = run.config, run.stats_after
    delta = {k: after.get(k, 0) - run.stats_before.get(k, 0)
             for k in ("completed", "cancelled", "failed", "rejected")}
    return {"config": {"duration_s": c.duration_s, "concurrency": c.concurrency, "seed": c.seed,
                       "window_s": c.window_s, "warmup_s": c.warmup_s,
                       "openai": c.openai is not None, "max_rss_growth": c.max_rss_growth,
                       "neighbours": c.neighbours},
            "elapsed_s": round(run.elapsed_s, 1), "totals": run.totals, "by_kind": run.by_kind,
            "stuck_workers": run.stuck_workers, "windows": windows(run),
            "kv": {"full": run.kv_full, "free_tokens": after.get("free_kv_tokens"),
                   "total_tokens": after.get("total_kv_tokens")},
            "engine_delta": delta, "rss": memory, "checks": passed, "passed": all(passed.values())}


def markdown(summary: dict) -> str:
    """The results table (and the per-window latency table) as markdown."""
    t, kv, mem = summary["totals"], summary["kv"], summary["rss"]
    errors = ", ".join(f"{k}: {v}" for k, v in t["errors"].items()) or "0"
    rows = [("duration (s) / concurrency / busy neighbours", f"{summary['elapsed_s']} / "
             f"{summary['config']['concurrency']} / {summary['config'].get('neighbours', 0)}"),
            ("sent", t["sent"]), ("completed", t["completed"]), ("rejected (busy)", t["rejected"]),
            ("expected errors (bad input, short timeout)", t["expected_error"]),
            ("abandoned (disconnects)", t["abandoned"]), ("errors", errors),
            ("**lost**", f"**{t['lost']}**"),
            ("KV back to full", f"{kv['full']} ({kv['free_tokens']:.0f} / "
             f"{kv['total_tokens']:.0f} tokens free)" if kv["total_tokens"] else kv["full"]),
            ("server RSS (MB): start / after warm-up / end",
             f"{mem['start_mb']} / {mem['baseline_mb']} / {mem['end_mb']}"),
            ("RSS growth (after warm-up; from start)", _growth(mem)),
            ("result", "PASS" if summary["passed"] else "FAIL: " + ", ".join(
                k for k, ok in summary["checks"].items() if not ok))]
    lines = ["| | |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows), "",
             "| window start (s) | sent | completed | rejected | errors | p50 (ms) | p99 (ms) |",
             "|---:|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {w['start_s']:.0f} | {w['sent']} | {w['completed']} | {w['rejected']} | "
              f"{w['errors']} | {w['p50_ms']} | {w['p99_ms']} |" for w in summary["windows"]]
    return "\n".join(lines + ["", *_kind_table(summary["by_kind"])]) + "\n"


def _kind_table(by_kind: dict[str, dict[str, int]]) -> list[str]:
    """One row per request kind, one column per outcome seen."""
    outcomes = sorted({o for counts in by_kind.values() for o in counts})
    return ["| kind | " + " | ".join(outcomes) + " |", "|---|" + "---:|" * len(outcomes),
            *(f"| {kind} | " + " | ".join(str(c.get(o, 0)) for o in outcomes) + " |"
              for kind, c in by_kind.items())]


def _growth(mem: dict) -> str:
    if mem["growth"] is None:
        return "not measured (server processes not readable)"
    return f"{mem['growth']:+.2%}; {mem['growth_from_start']:+.2%}"


def plot(summary: dict, run: SoakRun, path: Path) -> Path:
    """Latency p50/p99 per window (top) and server RSS over time (bottom)."""
    from tritonllm.loadtest.plots import _pyplot, _save

    plt = _pyplot()
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    w = [x for x in summary["windows"] if x["p50_ms"] is not None]
    mid = [x["start_s"] + run.config.window_s / 2 for x in w]
    top.plot(mid, [x["p50_ms"] for x in w], "o-", label="p50")
    top.plot(mid, [x["p99_ms"] for x in w], "s-", label="p99")
    top.set(ylabel="latency of completed requests (ms)", title="soak: latency per window")
    top.legend()
    pts = run.samples.points
    bottom.plot([t for t, _ in pts], [b / MB for _, b in pts], ".-")
    bottom.set(xlabel="seconds since start", ylabel="server RSS (MB)")
    return _save(fig, path)


def write(summary: dict, run: SoakRun, out_dir: Path) -> list[Path]:
    """``soak.json`` (summary + every record), ``soak.md`` and ``soak.png`` in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    records = [r.__dict__ for r in run.records]
    body = {**summary, "rss_samples": run.samples.points, "records": records}
    paths = [out_dir / "soak.json", out_dir / "soak.md"]
    paths[0].write_text(json.dumps(body, indent=1))
    paths[1].write_text(markdown(summary))
    return paths + [plot(summary, run, out_dir / "soak.png")]
