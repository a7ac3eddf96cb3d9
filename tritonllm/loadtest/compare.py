"""Two run summaries side by side, and an optional regression gate.

Rows: request and output-token throughput, goodput (when both runs had an SLO), failure rate,
and p50/p90/p99 of TTFT, TPOT, ITL and E2E. ``change`` is (B - A) / A. A row REGRESSES when B
is worse than A by more than the allowed fraction: lower for throughputs, higher for latencies.
"""

from __future__ import annotations

from dataclasses import dataclass

LATENCY_KEYS = ("ttft", "tpot", "itl", "e2e")
QUANTILES = ("p50", "p90", "p99")


@dataclass(frozen=True)
class Row:
    name: str
    a: float | None
    b: float | None
    higher_is_better: bool

    @property
    def change(self) -> float | None:
        if self.a is None or self.b is None or self.a == 0:
            return None
        return (self.b - self.a) / self.a

    def regressed(self, allowed: float) -> bool:
        change = self.change
        if change is None:
            return False
        return -change > allowed if self.higher_is_better else change > allowed


def _failure_rate(summary: dict) -> float:
    return summary["failed"] / summary["requests"] if summary["requests"] else 0.0


def rows(a: dict, b: dict) -> list[Row]:
    """Comparable rows of two summary.json documents."""
    sa, sb = a["summary"], b["summary"]
    out = [Row("requests/s", sa["request_throughput"], sb["request_throughput"], True),
           Row("output tokens/s", sa["output_token_throughput"], sb["output_token_throughput"],
               True),
           Row("failure rate", _failure_rate(sa), _failure_rate(sb), False)]
    if a.get("slo") and b.get("slo"):
        out.append(Row("goodput (req/s)", a["slo"]["goodput"], b["slo"]["goodput"], True))
    for key in LATENCY_KEYS:
        for q in QUANTILES:
            out.append(Row(f"{key.upper()} {q} (ms)", sa["latency_ms"][key][q],
                           sb["latency_ms"][key][q], False))
    return out


def _cell(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"


def markdown(a: dict, b: dict, allowed: float | None = None) -> str:
    label_a = a["run"].get("label") or "A"
    label_b = b["run"].get("label") or "B"
    lines = [f"| metric | A: {label_a} | B: {label_b} | change |", "|---|---|---|---|"]
    for row in rows(a, b):
        change = "–" if row.change is None else f"{row.change:+.1%}"
        flag = " **regressed**" if allowed is not None and row.regressed(allowed) else ""
        lines.append(f"| {row.name} | {_cell(row.a)} | {_cell(row.b)} | {change}{flag} |")
    return "\n".join(lines) + "\n"


def regressions(a: dict, b: dict, allowed: float) -> list[str]:
    """Names of the rows where B is worse than A by more than ``allowed`` (a fraction)."""
    return [row.name for row in rows(a, b) if row.regressed(allowed)]
