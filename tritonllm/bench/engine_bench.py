"""In-process engine benchmark on the mixed workload, next to transformers baselines.

``python -m tritonllm.bench.engine_bench`` (or ``tritonllm bench engine``) measures, in ONE run
on the same requests (``tritonllm.bench.workload``: 16 prompts, outputs of exactly
16/32/64/128 tokens forced with ``min_tokens``):

- transformers ``generate`` one request at a time (greedy);
- transformers static batches of 8 (left-padded; each batch runs until its longest member is
  done; only the tokens each request asked for count as useful);
- our ``LLMEngine`` in-process at concurrency 1 and 8 (a closed loop: a new request is
  submitted as soon as one finishes, streaming, so TTFT and inter-token latency are measured).

It prints output tokens/s, the ratios to both baselines, and TTFT / inter-token latency
percentiles. Figures depend on the machine and on what else runs on it: quote them with that.
"""

from __future__ import annotations

import argparse
import queue
import time
from dataclasses import dataclass, field

from tritonllm.engine.threads import thread_budget
from tritonllm.bench.workload import WorkItem, mixed_workload


@dataclass
class RunResult:
    """One measured run: useful output tokens over wall-clock seconds, latencies in ms."""

    name: str
    output_tokens: int
    seconds: float
    ttft_ms: list[float] = field(default_factory=list)
    itl_ms: list[float] = field(default_factory=list)

    @property
    def tokens_per_s(self) -> float:
        return self.output_tokens / self.seconds


def percentile(values: list[float], q: float) -> float | None:
    """The ``q``-th percentile (0..100) by linear interpolation; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def p50_text(values: list[float]) -> str:
    """The median rounded to a whole number, or "-" for no values (table cells)."""
    value = percentile(values, 50)
    return "-" if value is None else f"{value:.0f}"


# ---- transformers baselines ----------------------------------------------------------------

def transformers_sequential(model, prompts: list[list[int]], items: list[WorkItem],
                            progress) -> RunResult:
    """One greedy ``generate`` per request, exactly ``output_tokens`` new tokens each."""
    import torch

    start = time.perf_counter()
    for ids, item in zip(prompts, items):
        with torch.no_grad():
            model.generate(torch.tensor([ids]), do_sample=False, max_new_tokens=item.output_tokens,
                           min_new_tokens=item.output_tokens, pad_token_id=0)
        progress.update(1)
    return RunResult("transformers sequential generate", sum(i.output_tokens for i in items),
                     time.perf_counter() - start)


def transformers_static(model, prompts: list[list[int]], items: list[WorkItem], batch_size: int,
                        pad_id: int, progress) -> RunResult:
    """Static batches: each runs to its longest member; useful tokens = what was asked for."""
    start = time.perf_counter()
    for first in range(0, len(items), batch_size):
        batch = range(first, min(first + batch_size, len(items)))
        _generate_batch(model, [prompts[i] for i in batch],
                        max(items[i].output_tokens for i in batch), pad_id)
        progress.update(len(batch))
    return RunResult(f"transformers static batches of {batch_size}",
                     sum(i.output_tokens for i in items), time.perf_counter() - start)


def _generate_batch(model, prompts: list[list[int]], new_tokens: int, pad_id: int) -> None:
    import torch

    width = max(len(p) for p in prompts)
    ids = torch.tensor([[pad_id] * (width - len(p)) + p for p in prompts])  # left padding
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    with torch.no_grad():
        model.generate(ids, attention_mask=mask, do_sample=False, max_new_tokens=new_tokens,
                       min_new_tokens=new_tokens, pad_token_id=pad_id)


# ---- our engine ----------------------------------------------------------------------------

def engine_run(engine, prompts: list[list[int]], items: list[WorkItem], concurrency: int,
               progress) -> RunResult:
    """A closed loop of ``concurrency`` streaming requests; latencies from callback times."""
    done: queue.Queue = queue.Queue()
    ttft, itl = [], []
    pending = list(zip(prompts, items))
    start = time.perf_counter()
    in_flight = 0
    while pending or in_flight:
        while pending and in_flight < concurrency:
            _submit(engine, *pending.pop(0), done, ttft, itl, concurrency)
            in_flight += 1
        output = done.get()
        if output.finish_reason not in ("length", "end_id", "stop_words"):
            raise RuntimeError(f"request {output.request_id} failed: {output.error}")
        in_flight -= 1
        progress.update(1)
    return RunResult(f"engine, concurrency {concurrency}", sum(i.output_tokens for i in items),
                     time.perf_counter() - start, ttft, itl)


def _submit(engine, prompt: list[int], item: WorkItem, done: queue.Queue, ttft: list,
            itl: list, concurrency: int) -> None:
    from tritonllm.engine import GenerationRequest, SamplingParams

    request = GenerationRequest(
        f"bench-c{concurrency}-{item.index}", prompt, item.output_tokens, streaming=True,
        sampling=SamplingParams(min_tokens=item.output_tokens))
    submitted = time.perf_counter()
    last = [None]

    def on_output(output) -> None:
        now = time.perf_counter()
        if output.token_ids:
            if last[0] is None:
                ttft.append(1000 * (now - submitted))
            else:
                itl.append(1000 * (now - last[0]) / len(output.token_ids))
            last[0] = now
        if output.finished:
            done.put(output)

    engine.submit(request, on_output)


# ---- the report ----------------------------------------------------------------------------

def format_table(results: list[RunResult]) -> str:
    """A plain-text table: tok/s, ratios to the first two runs (the baselines), latencies."""
    by_name = {r.name: r for r in results}
    sequential = next((r for n, r in by_name.items() if "sequential" in n), None)
    static = next((r for n, r in by_name.items() if "static" in n), None)
    header = (f"{'run':36} {'tok/s':>7} {'x seq':>6} {'x static':>8} "
              f"{'TTFT p50/p99 ms':>16} {'ITL p50/p99 ms':>15}")
    lines = [header, "-" * len(header)]
    for r in results:
        lines.append(f"{r.name:36} {r.tokens_per_s:7.1f} {_ratio(r, sequential):>6} "
                     f"{_ratio(r, static):>8} {_pair(r.ttft_ms):>16} {_pair(r.itl_ms):>15}")
    return "\n".join(lines)


def _ratio(result: RunResult, baseline: RunResult | None) -> str:
    return "-" if baseline is None else f"{result.tokens_per_s / baseline.tokens_per_s:.2f}x"


def _pair(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{percentile(values, 50):.0f}/{percentile(values, 99):.0f}"


# ---- command line --------------------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    from tritonllm.serve.engine_options import add_engine_options

    parser.add_argument("--model", default=None,
                        help="a local Hugging Face Llama checkpoint dir (default: SmolLM2)")
    parser.add_argument("--requests", type=int, default=16, help="workload size (default 16)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8],
                        help="engine concurrency levels to measure (default: 1 8)")
    parser.add_argument("--static-batch-size", type=int, default=8)
    parser.add_argument("--skip-transformers", action="store_true",
                        help="measure only the engine (no baselines, no ratios)")
    parser.add_argument("--profile", action="store_true",
                        help="also print where a decode step's time goes, for fp32 and int8 "
                             "weights at batch 1 and 8 (tritonllm.bench.step_profile)")
    parser.add_argument("--profile-only", action="store_true",
                        help="print only that breakdown (no throughput runs)")
    parser.add_argument("--profile-context", type=int, default=256,
                        help="cached tokens per row in the profiled decode steps (default 256)")
    add_engine_options(parser)


def run(args) -> int:
    """Measure everything the arguments ask for and print the table."""
    import torch
    from tqdm import tqdm

    from tritonllm.serve.engine_options import engine_config
    from tritonllm.engine import LLMEngine
    from tritonllm.model_source import resolve_model_dir
    from tritonllm.tokenizer import TextCodec

    config = engine_config(args)
    torch.set_num_threads(thread_budget(config.num_threads).limit)  # baselines as engine
    model_dir = resolve_model_dir(args.model)
    codec = TextCodec.from_dir(model_dir)
    items = mixed_workload(args.requests)
    prompts = [codec.encode(item.prompt) for item in items]
    if args.profile or args.profile_only:
        from tritonllm.bench.step_profile import run_profile

        print(run_profile(model_dir, config, ["fp32", "int8"], [1, 8], args.profile_context,
                          reps=10))
        if args.profile_only:
            return 0
    print(f"model {model_dir}\n{len(items)} requests, {sum(i.output_tokens for i in items)} "
          f"output tokens, engine threads {thread_budget(config.num_threads).reason}")
    results = []
    if not args.skip_transformers:
        results += _baselines(model_dir, prompts, items, args.static_batch_size, codec.pad_id, tqdm)
    engine = LLMEngine(model_dir, config).start()
    try:
        engine.generate([_warmup_request()], timeout=600)
        for level in args.concurrency:
            with tqdm(total=len(items), desc=f"engine c={level}", leave=False) as progress:
                results.append(engine_run(engine, prompts, items, level, progress))
        stats = engine.stats()
    finally:
        engine.shutdown()
    print(format_table(results))
    print(f"engine: {stats.steps} steps, {stats.steps_with_multiple_decodes} with shared decodes, "
          f"max {stats.max_running_seen} running, {stats.preempted} preempted")
    return 0


def _warmup_request():
    from tritonllm.engine import GenerationRequest

    return GenerationRequest("warmup", [1, 2, 3, 4], 4)


def _baselines(model_dir, prompts, items, batch_size, pad_id, tqdm) -> list[RunResult]:
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32).eval()
    _generate_batch(model, [prompts[0]], 4, pad_id)  # warm-up
    with tqdm(total=len(items), desc="transformers sequential", leave=False) as progress:
        sequential = transformers_sequential(model, prompts, items, progress)
    with tqdm(total=len(items), desc="transformers static", leave=False) as progress:
        static = transformers_static(model, prompts, items, batch_size, pad_id, progress)
    return [sequential, static]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tritonllm.bench.engine_bench",
                                     description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
