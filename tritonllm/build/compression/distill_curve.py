"""The distillation curve: held-out perplexity against training tokens, and where it heads.

Input: a compress run's ``distill/curve.json`` (points written every ``eval_every`` steps:
step, tokens, elapsed_s, train_loss, heldout_perplexity) and the teacher's held-out perplexity
measured in the same report. Output: the points, a summary and a plot.

Where it heads: the student's excess loss over the teacher, ``e(t) = ln ppl(t) - ln ppl_teacher``
(nats per token), fitted as a power law of the tokens trained on, ``e = a * t^-b``, by least
squares in log-log over the points after step 0. The tokens at which the fit reaches the goal's
excess (``ln 1.15``) and the minutes that takes at the run's own rate are an extrapolation, not
a measurement: the fit ignores that a run repeats its training rows (later epochs teach less)
and that the learning-rate schedule decays; read it as an order of magnitude.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

GOAL = 1.15  # perplexity within +15 % of the teacher


def load(path: Path) -> list[dict]:
    points = json.loads(Path(path).read_text())
    if not points or "heldout_perplexity" not in points[0]:
        raise ValueError(f"--curve: {path} holds no held-out perplexity points "
                         "(compression.distill.eval_every was 0?)")
    return points


def fit(points: list[dict], teacher_ppl: float) -> tuple[float, float] | None:
    """(a, b) of ``e = a * tokens^-b``, or None with fewer than 3 usable points."""
    xy = [(math.log(p["tokens"]), math.log(_excess(p, teacher_ppl))) for p in points
          if p["tokens"] > 0 and _excess(p, teacher_ppl) > 0]
    if len(xy) < 3:
        return None
    mx, my = sum(x for x, _ in xy) / len(xy), sum(y for _, y in xy) / len(xy)
    slope = (sum((x - mx) * (y - my) for x, y in xy) / sum((x - mx) ** 2 for x, _ in xy))
    return math.exp(my - slope * mx), -slope


def _excess(point: dict, teacher_ppl: float) -> float:
    return math.log(point["heldout_perplexity"]) - math.log(teacher_ppl)


def summary(points: list[dict], teacher_ppl: float) -> dict:
    first, last = points[0], points[-1]
    lost = first["heldout_perplexity"] - teacher_ppl
    out = {"teacher_perplexity": teacher_ppl, "pruned_perplexity": first["heldout_perplexity"],
           "final_perplexity": last["heldout_perplexity"],
           "final_change_pct": 100 * (last["heldout_perplexity"] / teacher_ppl - 1),
           "recovered_share": (first["heldout_perplexity"] - last["heldout_perplexity"]) / lost
           if lost > 0 else None,
           "tokens": last["tokens"], "minutes": last["elapsed_s"] / 60,
           "tokens_per_minute": last["tokens"] / max(last["elapsed_s"] / 60, 1e-9)}
    ab = fit(points, teacher_ppl)
    if ab and ab[1] > 0:
        a, b = ab
        tokens = (a / math.log(GOAL)) ** (1 / b)
        out.update(fit_a=a, fit_b=b, goal_tokens_estimate=tokens,
                   goal_minutes_estimate=tokens / out["tokens_per_minute"])
    return out


def write(points: list[dict], teacher_ppl: float, out_dir: Path, label: str) -> dict:
    """``curve.json`` (points + summary) and ``curve.png`` in ``out_dir``; returns the summary."""
    out_dir.mkdir(parents=True, exist_ok=True)
    info = summary(points, teacher_ppl)
    (out_dir / "curve.json").write_text(json.dumps({"label": label, "summary": info,
                                                    "points": points}, indent=2) + "\n")
    plot(points, info, out_dir / "curve.png", label)
    return info


def plot(points: list[dict], info: dict, path: Path, label: str) -> None:
    """Log-log: perplexity against tokens; the pruned model (0 tokens) is drawn at half the
    first trained point's tokens."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    teacher = info["teacher_perplexity"]
    trained = [p for p in points if p["tokens"] > 0]
    zero = trained[0]["tokens"] / 2 if trained else 1
    xs = [p["tokens"] or zero for p in points]
    fig, ax = plt.subplots(figsize=(8, 5))
    ax.plot(xs, [p["heldout_perplexity"] for p in points], marker="o", label=label)
    ax.annotate("pruned", (zero, points[0]["heldout_perplexity"]), textcoords="offset points",
                xytext=(6, 0), fontsize=7)
    for p in trained[::max(1, len(trained) // 4)] + trained[-1:]:
        ax.annotate(f"{p['elapsed_s'] / 60:.0f} min", (p["tokens"], p["heldout_perplexity"]),
                    textcoords="offset points", xytext=(3, 7), fontsize=7)
    if "fit_a" in info and trained:
        end = max(info["goal_tokens_estimate"], xs[-1]) * 1.5
        fx = [trained[0]["tokens"] * (end / trained[0]["tokens"]) ** (i / 80) for i in range(81)]
        ax.plot(fx, [teacher * math.exp(info["fit_a"] * x ** -info["fit_b"]) for x in fx],
                linestyle=":", color="grey", label="power-law fit of the run (extrapolation)")
    ax.axhline(teacher, color="black", linewidth=0.8, label=f"teacher {teacher:.2f}")
    ax.axhline(teacher * GOAL, color="green", linestyle="--", linewidth=0.8,
               label=f"goal: +15 % ({teacher * GOAL:.2f})")
    half = (info["pruned_perplexity"] + teacher) / 2
    ax.axhline(half, color="orange", linestyle="--", linewidth=0.8,
               label=f"half of the pruning loss recovered ({half:.1f})")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("training tokens seen (student forward + backward)")
    ax.set_ylabel("perplexity on held-out text")
    ax.set_title("Distillation of the pruned SmolLM2 student (one CPU core)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
