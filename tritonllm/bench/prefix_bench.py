"""KV-cache reuse benchmark: the in-process engine with reuse on and off in ONE run.

``tritonllm bench prefix`` (``make bench-prefix``) serves the shared-prefix workload
(``loadtest/workloads/shared-prefix-1k.yaml``: a 1,024-token common prefix, 64-token questions,
exactly 32-token answers) from two engines built alike except ``enable_kv_cache_reuse``. Each
engine first answers one warm-up request that shares the prefix (a server in steady state has
its system prompt cached), then the two take turns over ``--rounds`` rounds, each round new
questions (the same for both engines), in a closed loop at ``--concurrency`` (streaming;
TTFT = submit -> first token callback).

It prints TTFT and inter-token latency percentiles and output tokens/s per engine, the TTFT
p50 ratio reuse-on / reuse-off, the prefix-cache counters, and whether every greedy output is
token for token the same with reuse on and off. Ratios hold across machines; absolute figures
depend on the machine and on what else runs on it.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from tritonllm.engine.threads import thread_budget
from tritonllm.bench.engine_bench import RunResult, percentile

WORKLOAD = Path(__file__).resolve().parents[2] / "loadtest" / "workloads" / "shared-prefix-1k.yaml"


@dataclass
class Side:
    """One engine of the A/B and what it produced."""

    name: str
    engine: object
    results: list[RunResult] = field(default_factory=list)
    outputs: dict[int, list[int]] = field(default_factory=dict)  # prompt index -> tokens


def closed_loop(side: Side, prompts: dict, concurrency: int, tag: str) -> RunResult:
    """Serve ``prompts`` (index -> prompt) keeping ``concurrency`` requests in flight; record
    latencies and each prompt's output tokens."""
    import queue

    from tritonllm.engine import GenerationRequest, SamplingParams

    done: queue.Queue = queue.Queue()
    ttft, itl = [], []
    pending = list(prompts.items())
    in_flight, start = 0, time.perf_counter()

    def submit(index, prompt):
        request = GenerationRequest(
            f"{tag}-{index}", list(prompt.token_ids), prompt.max_tokens, streaming=True,
            sampling=SamplingParams(min_tokens=prompt.min_tokens or 0))
        submitted, last, tokens = time.perf_counter(), [None], []

        def on_output(output):
            now = time.perf_counter()
            if output.token_ids:
                if last[0] is None:
                    ttft.append(1000 * (now - submitted))
                else:
                    itl.append(1000 * (now - last[0]) / len(output.token_ids))
                last[0] = now
                tokens.extend(output.token_ids)
            if output.finished:
                done.put((index, output, tokens))

        side.engine.submit(request, on_output)

    while pending or in_flight:
        while pending and in_flight < concurrency:
            submit(*pending.pop(0))
            in_flight += 1
        index, output, tokens = done.get()
        if output.finish_reason not in ("length", "end_id", "stop_words"):
            raise RuntimeError(f"request {output.request_id} failed: {output.error}")
        side.outputs.setdefault(index, tokens)
        in_flight -= 1
    produced = sum(p.max_tokens for p in prompts.values())
    return RunResult(f"{side.name}, c={concurrency}", produced, time.perf_counter() - start,
                     ttft, itl)


def merged(side: Side) -> RunResult:
    results = side.results
    return RunResult(side.name, sum(r.output_tokens for r in results),
                     sum(r.seconds for r in results),
                     [v for r in results for v in r.ttft_ms],
                     [v for r in results for v in r.itl_ms])


def report(sides: list[Side], concurrency: int) -> str:
    header = (f"{'engine':24} {'requests':>8} {'TTFT p50':>9} {'TTFT p90':>9} {'ITL p50':>8} "
              f"{'tok/s':>6}")
    lines = [header, "-" * len(header)]
    for side in sides:
        r = merged(side)
        lines.append(f"{side.name:24} {len(r.ttft_ms):8d} {percentile(r.ttft_ms, 50):7.0f}ms "
                     f"{percentile(r.ttft_ms, 90):7.0f}ms {percentile(r.itl_ms, 50):6.0f}ms "
                     f"{r.tokens_per_s:6.1f}")
    on, off = (percentile(merged(s).ttft_ms, 50) for s in sides)
    lines.append(f"TTFT p50 reuse on / reuse off at c={concurrency}: {on / off:.3f}x")
    same = sum(sides[0].outputs[i] == sides[1].outputs[i] for i in sides[1].outputs)
    lines.append(f"greedy outputs identical with reuse on and off: {same} of "
                 f"{len(sides[1].outputs)}")
    for side in sides:
        s = side.engine.stats()
        lines.append(f"{side.name}: prefix cache {s.prefix_cache_hits} of "
                     f"{s.prefix_cache_queries} queried tokens hit, {s.prefix_cache_evictions} "
                     f"blocks evicted, {s.prefill_tokens} prompt tokens computed")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from tritonllm.serve.engine_options import add_engine_options

    parser.add_argument("--model", default=None,
                        help="a local Hugging Face Llama checkpoint dir (default: SmolLM2)")
    parser.add_argument("--workload", default=str(WORKLOAD),
                        help="a shared-prefix workload (default: %(default)s)")
    parser.add_argument("--requests", type=int, default=16, help="requests per round")
    parser.add_argument("--rounds", type=int, default=2,
                        help="rounds per engine, the two engines taking turns")
    parser.add_argument("--concurrency", type=int, default=8)
    add_engine_options(parser)


def run(args) -> int:
    from tritonllm.serve.engine_options import engine_config
    from tritonllm.engine import LLMEngine
    from tritonllm.engine.runner import ModelRunner
    from tritonllm.loadtest.workloads import build_prompts, parse_spec
    from tritonllm.model_source import resolve_model_dir
    from tritonllm.tokenizer import TextCodec

    config = engine_config(args)
    model_dir = resolve_model_dir(args.model)
    workload = replace(parse_spec(args.workload),
                       num_prompts=args.requests * args.rounds + 1)
    warmup, *prompts = build_prompts(workload, TextCodec.from_dir(model_dir))
    print(f"model {model_dir}\nworkload {workload.describe()}; {args.rounds} rounds of "
          f"{args.requests} requests per engine at c={args.concurrency}, engine threads "
          f"{thread_budget(config.num_threads).reason}")
    runner = ModelRunner.from_hf_dir(model_dir, replace(config, enable_kv_cache_reuse=True))
    sides = [Side("reuse on", LLMEngine(runner).start()),
             Side("reuse off", LLMEngine(runner.sharing_weights(
                 replace(config, enable_kv_cache_reuse=False))).start())]
    try:
        for side in sides:
            closed_loop(side, {-1: warmup}, 1, "warmup")
            side.outputs.clear()
        for round_ in range(args.rounds):
            first = round_ * args.requests
            batch = {i: prompts[i] for i in range(first, first + args.requests)}
            for side in reversed(sides) if round_ % 2 else sides:
                side.results.append(closed_loop(side, batch, args.concurrency, f"r{round_}"))
                print(f"round {round_ + 1}: {side.name}: TTFT p50 "
                      f"{percentile(side.results[-1].ttft_ms, 50):.0f} ms", flush=True)
        print(report(sides, args.concurrency))
    finally:
        for side in sides:
            side.engine.shutdown()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tritonllm.bench.prefix_bench",
                                     description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
