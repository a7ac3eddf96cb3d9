"""Run reports: ``summary.json``, ``summary.md``, ``samples.jsonl`` and the PNG plots.

``summary.json`` schema (what ``compare`` and ``sweep`` read)::

    {"run": {label, host, users, request_rate, workload, locustfile, processes, ...},
     "summary": Summary (tritonllm.loadtest.metrics), latencies in ms,
     "slo": SloResult or null}

``samples.jsonl`` holds every :class:`RequestRecord`, one JSON object per line, so any figure
can be recomputed.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from tritonllm.loadtest.metrics import RequestRecord, Summary, summarize
from tritonllm.loadtest.slo import Slo, SloResult, evaluate

LATENCY_ROWS = (("ttft", "TTFT"), ("tt2t", "Time to 2nd token"), ("itl", "ITL (pooled)"),
                ("tpot", "TPOT"), ("e2e", "E2E latency"))
STAT_COLUMNS = ("count", "mean", "p50", "p90", "p95", "p99", "max")


def write_report(records: list[RequestRecord], run: dict, out_dir: Path,
                 slo: Slo | None = None, plots: bool = True) -> dict:
    """Write every report file into ``out_dir``; return the summary.json content."""
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = summarize(records)
    result = evaluate(slo, records, summary.window_s) if slo else None
    doc = {"run": run, "summary": summary.to_dict(), "slo": asdict(result) if result else None}
    (out_dir / "summary.json").write_text(json.dumps(doc, indent=2) + "\n")
    (out_dir / "summary.md").write_text(markdown(summary, run, result))
    write_samples(records, out_dir / "samples.jsonl")
    if plots and records:
        from tritonllm.loadtest import plots as plotting

        plotting.run_plots(records, out_dir)
    return doc


def write_samples(records: list[RequestRecord], path: Path) -> None:
    with path.open("w") as fh:
        for record in records:
            fh.write(json.dumps(record.to_wire()) + "\n")


def read_samples(path: Path) -> list[RequestRecord]:
    lines = Path(path).read_text().splitlines()
    return [RequestRecord.from_wire(json.loads(line)) for line in lines if line.strip()]


def load_summary(path: Path) -> dict:
    """A summary.json (or the directory holding one)."""
    path = Path(path)
    if path.is_dir():
        path = path / "summary.json"
    if not path.is_file():
        raise FileNotFoundError(f"summary: no summary.json at {path}")
    return json.loads(path.read_text())


def _fmt(value, digits: int = 1) -> str:
    if value is None:
        return "–"
    return str(value) if isinstance(value, int) else f"{value:.{digits}f}"


def latency_table(latency_ms: dict, tokens: dict) -> str:
    """Markdown rows of latency (ms) and token-count distributions."""
    lines = ["| metric | " + " | ".join(STAT_COLUMNS) + " |",
             "|---" * (len(STAT_COLUMNS) + 1) + "|"]
    rows = [(f"{title} (ms)", latency_ms[key]) for key, title in LATENCY_ROWS]
    rows += [("input tokens", tokens["input"]), ("output tokens", tokens["output"])]
    for title, dist in rows:
        dist = dist if isinstance(dist, dict) else asdict(dist)
        lines.append(f"| {title} | " + " | ".join(_fmt(dist[c]) for c in STAT_COLUMNS) + " |")
    return "\n".join(lines) + "\n"


def markdown(summary: Summary, run: dict, slo: SloResult | None) -> str:
    """The human-readable summary."""
    head = [f"# Load test: {run.get('label') or 'run'}", ""]
    head += [f"- {key}: {_text(value)}" for key, value in run.items() if value not in (None, "")]
    head += ["", "| requests | succeeded | failed | rejected (busy) | window (s) | req/s | "
                 "output tok/s |",
             "|---|---|---|---|---|---|---|",
             f"| {summary.requests} | {summary.succeeded} | {summary.failed} | "
             f"{summary.rejected} | "
             f"{summary.window_s:.1f} | {summary.request_throughput:.3f} | "
             f"{summary.output_token_throughput:.2f} |", ""]
    body = [latency_table(summary.latency_ms, summary.tokens)]
    if summary.errors:
        body += ["Errors by kind:", ""] + [f"- {n} × {kind}" for kind, n in summary.errors.items()]
        body.append("")
    if slo:
        verdict = "PASSED" if slo.passed else "FAILED"
        body += [f"SLO ({slo.slo}): **{verdict}**: {slo.good}/{slo.total} good "
                 f"({slo.attainment:.1%}), goodput {slo.goodput:.3f} req/s", ""]
    return "\n".join(head + body)


def _text(value) -> str:
    """A run field as text: a mapping (the server's counts) as ``key value, ...``."""
    if isinstance(value, dict):
        return ", ".join(f"{k} {v}" for k, v in value.items() if v is not None)
    return str(value)
