"""Where one decode step's time goes: the breakdown ``make bench-engine`` prints.

For each weight mode and batch size, on a synthetic decode batch (``B`` rows, each with
``context`` tokens already cached in consecutive blocks, as the block manager hands them out):

- ``forward``: ``ModelRunner.forward`` end to end (median of ``reps``), as it serves: with our
  CPU kernels, all layers in one ``tl_decoder_layers`` call. Then ``forward, op by op``: the same
  with ``fuse_layers`` off (the layer as ~30 separate calls; with torch's kernels only,
  the decode rows' K/V gathered into a padded batch instead, ``decode_views`` off);
- the phases of the op-by-op forward, timed in place by running the runner's own layer methods
  in the order ``ModelRunner._decoder_layer`` runs them, each wrapped in a clock: list → tensor
  preparation, embedding, RMSNorms, the four linear layers, RoPE, K/V write, attention,
  SiLU·up, residual adds, lm_head; ``Python, other`` is the op-by-op forward minus their sum;
- ``sampling`` (greedy, ``Sampler.sample``) and ``engine, outside the model``: one
  ``LLMEngine.step`` minus its forward and sampling (scheduling, bookkeeping, output callbacks;
  in tritonserver the callback is the handoff to Triton's response sender);
- the bound: weight bytes read per step over the measured read bandwidth.

All on one thread (``num_threads``); figures vary with the machine and what else runs on it.
"""

from __future__ import annotations

import statistics
import time
from collections import defaultdict
from dataclasses import replace

import torch

from tritonllm.engine import EngineConfig, GenerationRequest, LLMEngine, SamplingParams
from tritonllm.engine.request import Sequence
from tritonllm.engine.runner import ModelRunner
from tritonllm.engine.sampler import Sampler
from tritonllm.engine.scheduler import ScheduledBatch

PHASES = ("prepare", "embedding", "rms_norm", "linear qkv", "rope", "kv write", "attention",
          "linear o", "residual add", "linear gate_up", "silu*up", "linear down", "lm_head")


def decode_batch(runner: ModelRunner, rows: int, context: int) -> ScheduledBatch:
    """``rows`` decode rows, row ``i`` in consecutive blocks from ``i * blocks_per_row``."""
    size = runner.config.tokens_per_block
    per_row = -(-context // size)
    batch = ScheduledBatch(num_decodes=rows)
    for i in range(rows):
        table = list(range(i * per_row, (i + 1) * per_row))
        batch.query_lens.append(1)
        batch.context_lens.append(context)
        batch.block_tables.append(table)
        batch.sample.append(True)
        batch.input_ids.append(100 + i)
        batch.positions.append(context - 1)
        batch.slot_mapping.append(table[(context - 1) // size] * size + (context - 1) % size)
    return batch


def median_ms(fn, reps: int) -> float:
    """The median of ``reps`` timed calls of ``fn`` after one warm-up call, in ms."""
    fn()  # warm-up
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


@torch.inference_mode()
def phase_times(runner: ModelRunner, batch: ScheduledBatch) -> dict[str, float]:
    """One forward, phase by phase, in seconds (the runner's methods, in its order)."""
    spent: dict[str, float] = defaultdict(float)
    clock = time.perf_counter

    def timed(name, fn, *args):
        start = clock()
        result = fn(*args)
        spent[name] += clock() - start
        return result

    step = timed("prepare", runner.prepare, batch)
    x = timed("embedding", lambda: runner.weights.embedding(step.input_ids))
    for index, w in enumerate(runner.weights.layers):
        h = timed("rms_norm", runner._norm, x, w.input_norm)
        qkv = timed("linear qkv", w.qkv, h)
        q, k, v = timed("rope", runner._rope, qkv, step)
        timed("kv write", runner._write_kv, index, k, v, step)
        attn = timed("attention", runner._attention, index, q, k, v, step)
        o = timed("linear o", w.o, attn)
        x = timed("residual add", x.add_, o)
        h = timed("rms_norm", runner._norm, x, w.post_norm)
        gate_up = timed("linear gate_up", w.gate_up, h)
        act = timed("silu*up", runner._silu_mul, gate_up)
        down = timed("linear down", w.down, act)
        x = timed("residual add", x.add_, down)
    last = timed("rms_norm", runner._norm, x[step.sample_tokens], runner.weights.final_norm)
    timed("lm_head", runner.weights.lm_head, last)
    return spent


def sequences(rows: int) -> list[Sequence]:
    return [Sequence(i, GenerationRequest(f"p{i}", [1, 2, 3], 8), 0) for i in range(rows)]


def engine_overhead_ms(runner: ModelRunner, rows: int, steps: int = 12) -> float:
    """Median of one ``LLMEngine.step`` minus its forward and sampling, all rows decoding."""
    engine = LLMEngine(runner, runner.config)
    timings: list[tuple[int, float]] = []
    forward, sample = runner.forward, engine.sampler.sample

    def timed_forward(batch, *args):
        start = time.perf_counter()
        out = forward(batch, *args)
        timings.append((batch.num_decodes, time.perf_counter() - start))
        return out

    def timed_sample(*args):
        start = time.perf_counter()
        out = sample(*args)
        timings[-1] = (timings[-1][0], timings[-1][1] + time.perf_counter() - start)
        return out

    runner.forward, engine.sampler.sample = timed_forward, timed_sample
    try:
        for i in range(rows):
            engine.submit(GenerationRequest(f"o{i}", [1, 5, 9, 13], steps + 2,
                                            sampling=SamplingParams(min_tokens=steps + 2)),
                          lambda output: None)
        overheads = []
        for _ in range(steps):
            start = time.perf_counter()
            engine.step()
            elapsed = time.perf_counter() - start
            decodes, model = timings[-1]
            if decodes == rows:
                overheads.append(elapsed - model)
    finally:
        del runner.forward
        engine.shutdown()
    return 1000 * statistics.median(overheads) if overheads else float("nan")


def read_bandwidth_gbs(megabytes: int = 256) -> float:
    data = torch.ones(megabytes * 2 ** 20 // 4)
    seconds = median_ms(data.sum, 5) / 1000
    return data.numel() * 4 / seconds / 1e9


def weight_bytes(runner: ModelRunner) -> int:
    """Bytes of the linear layers' weights and scales, as a decode step reads them: what our
    kernels take (``kernel_operands``), else 1 byte (fbgemm's int8) or 4 (oneDNN's fp32) per
    weight."""
    total = 0
    for linear in runner.weights.linears():
        if linear.backend == "kernels":
            weight, scale, _, block_scale = linear.kernel_operands()
            total += sum(t.numel() * t.element_size() for t in (weight, scale, block_scale)
                         if t is not None)
        else:
            total += linear.in_features * linear.out_features * (1 if runner.int8 else 4)
    return total


def profile(runner: ModelRunner, rows: int, context: int, reps: int) -> dict[str, float]:
    """All figures of one (runner, batch size), in ms."""
    batch = decode_batch(runner, rows, context)
    result = {"forward": median_ms(lambda: runner.forward(batch), reps)}
    switch = "fuse_layers" if runner.kernel_layers is not None else "decode_views"
    setattr(runner, switch, False)
    result["forward, op by op"] = median_ms(lambda: runner.forward(batch), reps)
    runs = [phase_times(runner, batch) for _ in range(max(3, reps // 2))]
    delattr(runner, switch)
    for name in PHASES:
        result[name] = 1000 * statistics.median(run[name] for run in runs)
    result["Python, other"] = result["forward, op by op"] - sum(result[name] for name in PHASES)
    logits = runner.forward(batch)
    seqs = sequences(rows)
    result["sampling"] = median_ms(lambda: Sampler().sample(logits, seqs, [[2]] * rows), reps)
    return result


def format_profile(title: str, columns: dict[str, dict[str, float]], bound: dict[str, float]
                   ) -> str:
    names = list(next(iter(columns.values())))
    head = f"{title:34}" + "".join(f"{c:>14}" for c in columns)
    lines = [head, "-" * len(head)]
    for name in names:
        lines.append(f"{name:34}" + "".join(f"{col[name]:14.2f}" for col in columns.values()))
    lines.append(f"{'bound: weight bytes / read GB/s':34}"
                 + "".join(f"{bound[c]:14.2f}" for c in columns))
    return "\n".join(lines)


def run_profile(model_dir, config: EngineConfig, modes: list[str], rows_list: list[int],
                context: int, reps: int) -> str:
    bandwidth = read_bandwidth_gbs()
    tables = []
    for mode in modes:
        runner = ModelRunner.from_hf_dir(model_dir, replace(config, weights=mode))
        columns, bound = {}, {}
        for rows in rows_list:
            key = f"B={rows} ms"
            columns[key] = profile(runner, rows, context, reps)
            columns[key]["engine, outside the model"] = engine_overhead_ms(runner, rows)
            columns[key]["tok/s (1000*B/step)"] = 1000 * rows / (
                columns[key]["forward"] + columns[key]["sampling"]
                + columns[key]["engine, outside the model"])
            bound[key] = 1000 * weight_bytes(runner) / (bandwidth * 1e9)
        tables.append(format_profile(f"{mode} weights, context {context}", columns, bound))
    return (f"decode step profile, torch threads {torch.get_num_threads()}, read bandwidth "
            f"{bandwidth:.1f} GB/s (a {256} MB sum)\n" + "\n\n".join(tables))

