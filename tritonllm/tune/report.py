"""What a tune run leaves behind, in its output directory:

- ``tune.md``: the ranked table (mean goodput over the repeated runs, their spread, the
  highest rate within the SLO, p95 latencies there, the limit that broke first above it), and
  the descent's log: each adopted change, its gain and the binding limit.
- ``tune.json``: the same, every candidate's probes included.
- ``pareto.png``: goodput against the p95 of the SLO's first limit, one point per candidate;
  the Pareto front (no other point has more goodput at less latency) joined by a line.
- ``<name>-tuned.yaml``: the winner as a whole build profile (every key written out), which
  ``tritonllm serve --profile`` and ``tritonllm build`` take as it is.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from tritonllm.build.profile import BuildProfile
from tritonllm.tune.search import Candidate, TuneResult
from tritonllm.tune.space import candidate_profile


def _p95(candidate: Candidate, metric: str):
    best = candidate.search.best if candidate.search else None
    return best.p95_ms.get(metric) if best else None


def markdown(result: TuneResult, metrics: list[str], header: str, running: bool = False) -> str:
    """The report. ``running``: a deployment measured as it runs (nothing varied)."""
    cols = ["rank", "candidate", "needs", "max req/s", "goodput req/s", "spread", "runs",
            "good tok/s", *[f"{m} p95 ms" for m in metrics], "above it, most broke"]
    lines = [header, "", "| " + " | ".join(cols) + " |", "|---" * len(cols) + "|"]
    for rank, c in enumerate(result.ranking, 1):
        if c.error:
            cells = ["–", c.label, "", f"not measured: {c.error}"] + [""] * (len(cols) - 4)
            lines.append("| " + " | ".join(cells) + " |")
            continue
        best, above = c.search.best, c.search.above
        needs = ("–" if running else "rebuild: " + "+".join(c.stages) if c.stages
                 else "restart")
        cells = [str(rank), "the deployment" if running else c.label, needs,
                 f"{c.search.max_rate:g}", f"{c.goodput:.2f}",
                 f"{c.spread:.0%}" if len(c.goodputs) > 1 else "–", str(len(c.goodputs)),
                 f"{best.good_token_rate:.0f}" if best else "–",
                 *[_fmt(_p95(c, m)) for m in metrics],
                 (above.binding or "–") if above else "–"]
        lines.append("| " + " | ".join(cells) + " |")
    base, winner = result.base, result.winner
    if not winner.goodput:
        return "\n".join(lines + ["", "No candidate met the SLO at any rate tried: loosen the "
                                   "SLO or serve on a larger machine."]) + "\n"
    above = winner.search.above
    binds = (f" Above {winner.search.max_rate:g} req/s the limit most requests broke was "
             f"`{above.binding}`." if above and above.binding else "")
    if running:
        return "\n".join(lines + ["", f"The deployment serves {winner.search.max_rate:g} req/s "
                                   f"within the SLO (goodput {winner.goodput:.2f} req/s)."
                                   f"{binds}"]) + "\n"
    ratio = winner.goodput / base.goodput if base.goodput else float("inf")
    lines += ["", f"Winner: **{winner.label}**, goodput {winner.goodput:.2f} req/s = "
              f"{ratio:.2f}x the base profile's {base.goodput:.2f} req/s (both means over "
              f"their runs in this tune run).{binds}", "", "Descent:", ""]
    lines += [f"- {note}" for note in result.log] or ["- no change beat the base profile"]
    if "quantization.mode" in winner.overrides:
        lines += ["", "The winner quantizes the weights, which changes the model's outputs: the "
                  "tuner measured speed only, so check the accuracy (`tritonllm accuracy`) "
                  "before you serve it."]
    return "\n".join(lines) + "\n"


def _fmt(value) -> str:
    return "–" if value is None else f"{value:.0f}"


def write_report(result: TuneResult, base: BuildProfile, out_dir: Path, metrics: list[str],
                 header: str, settings: dict, running: bool = False) -> Path | None:
    """Write every file; returns the winning profile's path (None: no candidate met the SLO,
    or ``running``, a deployment measured as it runs, so none is written)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "tune.md").write_text(markdown(result, metrics, header, running))
    (out_dir / "tune.json").write_text(json.dumps(
        {"settings": settings, "used_s": result.used_s, "log": result.log,
         "ranking": [_candidate_dict(c) for c in result.ranking]}, indent=2) + "\n")
    plot_pareto(result, metrics[0], out_dir / "pareto.png")
    if not result.winner.goodput or running:
        return None
    return write_profile(base, result.winner, out_dir, header)


def _candidate_dict(c: Candidate) -> dict:
    search = c.search
    return {"overrides": c.overrides, "label": c.label, "error": c.error, "stages": c.stages,
            "goodput": c.goodput, "spread": c.spread, "goodputs": c.goodputs,
            "max_rate": search.max_rate if search else None,
            "probes": [p.to_dict() for p in search.probes] if search else [],
            "repeats": [p.to_dict() for p in c.repeats]}


def write_profile(base: BuildProfile, winner: Candidate, out_dir: Path, header: str) -> Path:
    profile = candidate_profile(base, winner.overrides)
    data = {**profile.to_dict(), "name": f"{base.name}-tuned"}
    changes = ", ".join(f"{k}={v}" for k, v in sorted(winner.overrides.items())) or "none"
    path = out_dir / f"{base.name}-tuned.yaml"
    comment = (f"# Written by `tritonllm tune` from {base.source or base.name}.\n"
               f"# {header}\n# Changed from the base profile: {changes}.\n"
               f"# Goodput {winner.goodput:.2f} req/s within the SLO, up to "
               f"{winner.search.max_rate:g} req/s.\n")
    path.write_text(comment + yaml.safe_dump(data, sort_keys=False))
    return path


def plot_pareto(result: TuneResult, metric: str, path: Path) -> Path:
    from tritonllm.loadtest.plots import _pyplot, _save

    plt = _pyplot()
    points = [(c, _p95(c, metric)) for c in result.ranking if c.goodput > 0]
    points = [(c, lat) for c, lat in points if lat is not None]
    fig, ax = plt.subplots(figsize=(8, 5))
    for c, lat in points:
        style = dict(color="tab:red", s=80) if c is result.winner else (
            dict(color="k", marker="s", s=60) if c is result.base else dict(color="tab:blue"))
        ax.scatter(lat, c.goodput, zorder=3, **style)
        ax.annotate(c.label, (lat, c.goodput), fontsize=7, xytext=(4, 3),
                    textcoords="offset points")
    front = pareto_front([(lat, c.goodput) for c, lat in points])
    if front:
        ax.plot(*zip(*front), color="tab:red", alpha=0.4, zorder=2, label="Pareto front")
        ax.legend(loc="lower right")
    ax.set_xlabel(f"{metric} p95 at the candidate's highest rate within the SLO (ms)")
    ax.set_ylabel("goodput (requests/s within the SLO)")
    ax.set_title("tritonllm tune: red = winner, black square = base profile")
    ax.grid(alpha=0.3)
    return _save(fig, path)


def pareto_front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The (latency, goodput) points no other point beats on both, by latency."""
    front, best = [], float("-inf")
    for lat, good in sorted(points, key=lambda p: (p[0], -p[1])):
        if good > best:
            front.append((lat, good))
            best = good
    return front
