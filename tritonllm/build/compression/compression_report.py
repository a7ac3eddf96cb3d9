"""What each compression lever costs in quality and buys in size and CPU speed, in one run.

``tritonllm accuracy --teacher DIR --students LABEL=DIR[:MODE],...`` measures the teacher and
every student (any HF Llama dir, e.g. a build's ``compressed/model`` or ``compressed/pruned``;
``:MODE`` adds a quantization mode simulated with ModelOpt as ``tritonllm.build.quantization.accuracy`` does):

- perplexity on ``corpus.HELDOUT`` (never trained or calibrated on) and its change vs the teacher;
- top-1 agreement with the teacher at every held-out position;
- parameters (distinct; a tied embedding once) and non-zero decoder linear weights;
- weight bytes as deployed: the planner's count (``planner.weight_bytes_total``) at float16
  or at the quantization mode's bits; 2:4 zeros are counted as stored (dense);
- CPU twin output tokens/s at concurrency 1 and 8 (``engine_bench.engine_run``, in-process
  ``LLMEngine`` on the mixed workload), rounds interleaved over the models so that load from
  other processes falls on all of them alike. One benchmark per model shape (layers, heads,
  MLP width): the CPU twin computes dense fp32, so checkpoints of one shape (before and after
  distillation, 2:4 zeros, a ``:MODE`` row's simulated quantization) run at the same speed and
  share the figures. ``speed_of`` limits the speed runs to the teacher and the shapes of the
  named students (the others keep "-"); every speed run notes the 1-minute load average of the
  machine when it started (``load_avg``), since other processes change these figures.

Writes ``compression.json``, ``compression.md`` and ``compression.png`` (perplexity vs c=1
tokens/s).
"""

from __future__ import annotations

import json
import math
import os
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from tritonllm.build.quantization import accuracy

from tritonllm.build import corpus

CALIBRATION_SAMPLES = 8  # windows of 128 tokens for a simulated quantization's ranges
KV_CACHE_TOKENS = 8 * 512  # the benchmark's 8 requests fit (short prompts + <= 128 tokens)


@dataclass(frozen=True)
class Student:
    label: str
    model_dir: Path
    mode: str = "none"  # a quantization mode, simulated


@dataclass
class Row:
    label: str
    model_dir: str
    mode: str
    params: int
    nonzero_linear: int
    linear: int
    weight_bytes: int
    perplexity: float
    perplexity_change_pct: float
    top1_agreement: float
    tok_s_c1: float | None = None
    tok_s_c8: float | None = None
    bench_runs: dict = field(default_factory=dict)
    load_avg: list = field(default_factory=list)  # 1-minute load average as each speed run began


def parse_students(text: str) -> list[Student]:
    """``LABEL=DIR[:MODE],...`` -> students; names the bad item."""
    out = []
    for item in filter(None, (s.strip() for s in text.split(","))):
        label, sep, rest = item.partition("=")
        if not sep or not label or not rest:
            raise ValueError(f"--students: expected LABEL=DIR[:MODE], got {item!r}")
        path, _, mode = rest.partition(":")
        out.append(Student(label, Path(path), mode or "none"))
    return out


def weight_bytes(model_dir: Path, mode: str) -> int:
    """The planner's deployed weight bytes for this checkpoint at float16 / ``mode``."""
    from tritonllm.build.planning.architectures import from_model_dir
    from tritonllm.build.planning.planner import weight_bytes_total
    from tritonllm.build.profile import from_dict

    group = {"group_size": 64} if "awq" in mode else {}
    profile = from_dict({"name": "report", "model": {"dir": str(model_dir)}, "dtype": "float16",
                         "quantization": {"mode": mode, **group}})
    return weight_bytes_total(profile, from_model_dir(model_dir))


def linear_counts(model) -> tuple[int, int]:
    """(non-zero, all) weights of the decoder's linear layers."""
    from tritonllm.build.compression.sparsity import decoder_linear_weights

    weights = decoder_linear_weights(model).values()
    return sum(int((w != 0).sum()) for w in weights), sum(w.numel() for w in weights)


def measure_quality(students: list[Student], teacher_dir: Path, log=print) -> list[Row]:
    from tritonllm.build.compression.compress import parameter_count
    from tritonllm.build.quantization.quantize import load_model
    from tritonllm.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(teacher_dir)
    ids = tokenizer(corpus.HELDOUT, return_tensors="pt").input_ids[0]
    heldout = list(ids.split(accuracy.WINDOW))
    reference = accuracy.evaluate(load_model(teacher_dir), heldout, [], 0)
    rows = []
    for s in students:
        model = load_model(s.model_dir)
        nonzero, linear = linear_counts(model)
        params = parameter_count(model)
        if s.mode != "none":
            from tritonllm.build.profile import QuantSpec

            model = accuracy.simulated(model, tokenizer, QuantSpec(
                mode=s.mode, group_size=64, calibration_samples=CALIBRATION_SAMPLES,
                calibration_max_len=128))
        out = accuracy.evaluate(model, heldout, [], 0)
        ppl, ref = math.exp(out.nll), math.exp(reference.nll)
        rows.append(Row(s.label, str(s.model_dir), s.mode, params, nonzero, linear,
                        weight_bytes(s.model_dir, s.mode), ppl, 100 * (ppl / ref - 1),
                        (out.argmax == reference.argmax).float().mean().item()))
        log(f"quality: {s.label}: perplexity {ppl:.2f} ({rows[-1].perplexity_change_pct:+.1f} %),"
            f" top-1 {100 * rows[-1].top1_agreement:.1f} %")
    return rows


def measure_speed(rows: list[Row], requests: int, rounds: int, log=print) -> None:
    """Fill tok_s_c1 / tok_s_c8 (medians over ``rounds``) for every distinct checkpoint."""
    from tqdm import tqdm

    from tritonllm.bench.engine_bench import engine_run
    from tritonllm.bench.workload import mixed_workload
    from tritonllm.engine import LLMEngine
    from tritonllm.tokenizer import TextCodec

    shapes = {r.model_dir: _shape(Path(r.model_dir)) for r in rows}
    dirs = [d for i, (d, shape) in enumerate(shapes.items())
            if shape not in list(shapes.values())[:i]]  # the first checkpoint of each shape
    items = mixed_workload(requests)
    prompts = [TextCodec.from_dir(dirs[0]).encode(i.prompt) for i in items]
    engines = {d: LLMEngine(d, _engine_config(Path(d))).start() for d in dirs}
    runs: dict = {d: {1: [], 8: []} for d in dirs}
    loads: dict = {d: [] for d in dirs}
    try:
        for engine in engines.values():
            engine.generate([_warmup()], timeout=600)
        for round_ in range(rounds):
            for d, engine in engines.items():  # interleaved: every model in every round
                for level in (1, 8):
                    loads[d].append(round(os.getloadavg()[0], 2))
                    with tqdm(total=len(items), desc=f"{Path(d).name} c={level}",
                              leave=False) as bar:
                        runs[d][level].append(engine_run(engine, prompts, items, level,
                                                         bar).tokens_per_s)
                log(f"speed round {round_ + 1}/{rounds}: {d}: c=1 {runs[d][1][-1]:.1f}, "
                    f"c=8 {runs[d][8][-1]:.1f} tok/s")
    finally:
        for engine in engines.values():
            engine.shutdown()
    by_shape = {shapes[d]: (runs[d], loads[d]) for d in dirs}
    for r in rows:
        measured, r.load_avg = by_shape[shapes[r.model_dir]]
        r.bench_runs = measured
        r.tok_s_c1 = statistics.median(measured[1])
        r.tok_s_c8 = statistics.median(measured[8])


def timed_rows(rows: list[Row], speed_of: set[str] | None) -> list[Row]:
    """The teacher and the rows that share a shape with a student named in ``speed_of``
    (every row when it is None)."""
    if speed_of is None:
        return rows
    shapes = {_shape(Path(r.model_dir)) for r in rows if r.label in speed_of}
    return [rows[0]] + [r for r in rows[1:] if _shape(Path(r.model_dir)) in shapes]


def _engine_config(model_dir: Path):
    from tritonllm.engine import EngineConfig

    positions = json.loads((model_dir / "config.json").read_text())["max_position_embeddings"]
    seq = min(512, positions)
    return EngineConfig(max_tokens_in_paged_kv_cache=KV_CACHE_TOKENS, max_seq_len=seq,
                        max_input_len=seq // 2)


def _shape(model_dir: Path) -> tuple:
    config = json.loads((model_dir / "config.json").read_text())
    return tuple(config.get(k) for k in ("num_hidden_layers", "hidden_size", "intermediate_size",
                                         "num_attention_heads", "num_key_value_heads",
                                         "vocab_size"))


def _warmup():
    from tritonllm.engine import GenerationRequest

    return GenerationRequest("warmup", [1, 2, 3, 4], 4)


def markdown(rows: list[Row], requests: int, rounds: int) -> str:
    base = rows[0]
    head = [f"Reference: {base.label}. Perplexity on the bundled held-out text; top-1: share of "
            "held-out positions where the model's next-token argmax equals the teacher's; "
            f"tokens/s: CPU twin, in-process engine, mixed workload of {requests} requests, "
            f"median of {rounds} interleaved rounds, same run; weight bytes at float16 (or the "
            f"quantization mode), as the planner counts them.{_load_note(rows)}", "",
            "| model | params (M) | non-zero linear | weight MB | perplexity | change | top-1 "
            "| tok/s c=1 | tok/s c=8 | speed-up c=1 / c=8 |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    lines = []
    for r in rows:
        speed = (f"{r.tok_s_c1 / base.tok_s_c1:.2f}x / {r.tok_s_c8 / base.tok_s_c8:.2f}x"
                 if r.tok_s_c1 and base.tok_s_c1 else "-")
        lines.append(
            f"| {r.label} | {r.params / 1e6:.1f} | {100 * r.nonzero_linear / r.linear:.0f} % | "
            f"{r.weight_bytes / 1e6:.0f} | {r.perplexity:.2f} | {r.perplexity_change_pct:+.1f} %"
            f" | {100 * r.top1_agreement:.1f} % | {_num(r.tok_s_c1)} | {_num(r.tok_s_c8)} | "
            f"{speed} |")
    return "\n".join(head + lines) + "\n"


def _load_note(rows: list[Row]) -> str:
    loads = [x for r in rows for x in r.load_avg]
    if not loads:
        return ""
    return (f" Load average (1 min) when the speed runs began: {min(loads):.1f} to "
            f"{max(loads):.1f} on this machine's {os.cpu_count()} cores.")


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def plot(rows: list[Row], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    base = rows[0]
    fig, ax = plt.subplots(figsize=(8, 5))
    for r in rows:
        if not r.tok_s_c1:
            continue
        x, y = r.tok_s_c1 / base.tok_s_c1, r.perplexity
        ax.scatter(x, y, s=30 + r.params / 2e6)
        ax.annotate(r.label, (x, y), textcoords="offset points", xytext=(5, 4), fontsize=8)
    ax.axhline(base.perplexity * 1.15, linestyle="--", linewidth=0.8, color="grey")
    ax.text(ax.get_xlim()[0], base.perplexity * 1.15, " +15 % perplexity", fontsize=7,
            va="bottom", color="grey")
    ax.set_xlabel(f"CPU twin tokens/s at c=1, relative to {base.label}")
    ax.set_ylabel("perplexity on held-out text (lower is better)")
    ax.set_yscale("log")
    ax.set_title("Compression levers on SmolLM2-135M: quality vs speed (marker size: params)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run_report(teacher_dir: Path, students: list[Student], out_dir: Path | None,
               requests: int = 8, rounds: int = 2, speed: bool = True, log=print,
               speed_of: set[str] | None = None) -> list[Row]:
    """The teacher first, then ``students`` (see the module docstring)."""
    unknown = (speed_of or set()) - {s.label for s in students}
    if unknown:
        raise ValueError(f"--speed-of: {sorted(unknown)} not among the --students labels")
    torch.manual_seed(0)
    everyone = [Student("teacher (dense)", Path(teacher_dir)), *students]
    rows = measure_quality(everyone, Path(teacher_dir), log)
    if speed:
        measure_speed(timed_rows(rows, speed_of), requests, rounds, log)
    if out_dir is not None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "compression.json").write_text(
            json.dumps([asdict(r) for r in rows], indent=2) + "\n")
        (out_dir / "compression.md").write_text(markdown(rows, requests, rounds))
        if speed:
            plot(rows, out_dir / "compression.png")
    return rows
