"""The served path end to end on the mixed workload, next to transformers baselines.

``tritonllm bench serving`` (``make bench``) starts a real tritonserver with the CPU engine,
then measures in ONE run, on the same requests (``tritonllm.bench.workload``: 16 prompts,
outputs of exactly 16/32/64/128 tokens forced with ``min_tokens``):

- the ``ensemble`` over gRPC streaming through ``tritonllm.client``, closed loop at each
  concurrency (default 1 and 8): output tokens/s, TTFT (submit to first response) and
  inter-token latency (gaps between consecutive responses, one token each) p50/p99;
- transformers ``generate`` one request at a time, and static batches of 8 (each batch runs
  until its longest member is done; only the tokens each request asked for count), measured
  after the server has stopped, on the same threads.

The server's own ``tritonllm_generation_tokens_total`` counter is checked against the tokens
the workload asked for, so the throughput is not taken on trust.
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ThreadPoolExecutor

from tritonllm.bench import engine_bench
from tritonllm.bench.engine_bench import RunResult, _baselines, format_table
from tritonllm.bench.workload import WorkItem, mixed_workload


def served_run(url: str, items: list[WorkItem], concurrency: int, progress) -> RunResult:
    """Closed loop of ``concurrency`` streaming requests through the ensemble."""
    from tritonllm.client import Client

    ttft, itl = [], []
    with Client(protocol="grpc", url=url) as client:
        def one(item: WorkItem) -> None:
            times = _stream_times(client, item)
            ttft.append(1000 * times[0])
            itl.extend(1000 * (b - a) for a, b in zip(times[1:-1], times[2:]))
            progress.update(1)

        start = time.perf_counter()
        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            list(pool.map(one, items))
        seconds = time.perf_counter() - start
    return RunResult(f"server, concurrency {concurrency}", sum(i.output_tokens for i in items),
                     seconds, ttft, itl)


def _stream_times(client, item: WorkItem) -> list[float]:
    """Seconds from submit to each response; the first holds the first token."""
    start = time.perf_counter()
    times = [time.perf_counter() - start
             for _ in client.stream(item.prompt, max_tokens=item.output_tokens,
                                    min_tokens=item.output_tokens)]
    return times


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The engine benchmark's options: the same workload, levels and engine settings."""
    engine_bench.add_arguments(parser)


def run(args) -> int:
    import torch
    from tqdm import tqdm

    from tritonllm.cli import dataclass_from_args
    from tritonllm.engine import EngineConfig
    from tritonllm.model_source import resolve_model_dir
    from tritonllm.tokenizer import TextCodec

    config = dataclass_from_args(EngineConfig, args, "engine")
    model_dir = resolve_model_dir(args.model)
    items = mixed_workload(args.requests)
    print(f"model {model_dir}\n{len(items)} requests, {sum(i.output_tokens for i in items)} "
          f"output tokens, torch threads {config.num_threads}")
    results, generated = _served(model_dir, config, items, args.concurrency, tqdm)
    if not args.skip_transformers:
        torch.set_num_threads(config.num_threads)  # the baselines get the engine's threads
        codec = TextCodec.from_dir(model_dir)
        prompts = [codec.encode(item.prompt) for item in items]
        results = _baselines(model_dir, prompts, items, args.static_batch_size, codec.pad_id,
                             tqdm) + results
    print(format_table(results))
    asked = len(args.concurrency) * sum(i.output_tokens for i in items)
    print(f"server counted {generated} generated tokens for the measured runs "
          f"(the workload asked for {asked})")
    return 0 if generated == asked else 1


def _served(model_dir, config, items, levels, tqdm) -> tuple[list[RunResult], int]:
    """Start the server, warm it up, measure each concurrency; the tokens the server counted."""
    import tempfile
    from pathlib import Path

    from tritonllm.serve.cpu import CpuDeployment
    from tritonllm.serve.launcher import Ports, TritonServer
    from tritonllm.serve.metrics import engine_stats

    with tempfile.TemporaryDirectory(prefix="tritonllm-bench-") as tmp:
        deployment = CpuDeployment(model=str(model_dir), engine=config,
                                   repo_dir=Path(tmp) / "model_repository")
        with TritonServer(deployment.prepare(), Ports.free()) as server:
            _served_warmup(server.grpc_url)
            time.sleep(1.0)  # the engine gauges refresh twice a second
            before = engine_stats(server.metrics_url)["generated_tokens"]
            results = []
            for level in levels:
                with tqdm(total=len(items), desc=f"server c={level}", leave=False) as progress:
                    results.append(served_run(server.grpc_url, items, level, progress))
            time.sleep(1.0)  # the engine gauges refresh twice a second
            generated = engine_stats(server.metrics_url)["generated_tokens"] - before
    return results, int(generated)


def _served_warmup(url: str) -> None:
    from tritonllm.client import Client

    with Client(protocol="grpc", url=url) as client:
        client.generate("Hello", max_tokens=4)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tritonllm bench serving",
                                     description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
