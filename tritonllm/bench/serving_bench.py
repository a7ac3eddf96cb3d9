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

``--peer vllm`` / ``--peer llama.cpp`` (repeatable) then runs the same workload, back to back in
the same run, on the peers a CPU user would pick instead (``tritonllm.bench.peers``: vLLM CPU,
llama.cpp's server on GGUFs of ``--gguf-type``), and prints our ratio to each
(``tritonllm.bench.peer_bench``). ``--install-peer`` installs a missing peer into the cache dir
first (vLLM: a few minutes; llama.cpp: a build of ``llama-server``, 10+ minutes).
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ThreadPoolExecutor

from pathlib import Path

from tritonllm.bench import engine_bench
from tritonllm.bench.engine_bench import RunResult, _baselines, format_table
from tritonllm.bench.workload import WorkItem, mixed_workload
from tritonllm.engine.config import available_cores


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
    """The engine benchmark's options (the same workload, levels and engine settings) and the
    peers'."""
    from tritonllm.bench import peers

    engine_bench.add_arguments(parser)
    group = parser.add_argument_group("peers (issue 12; optional, installed outside the repo)")
    group.add_argument("--peer", action="append", choices=peers.PEER_NAMES, default=[],
                       help="also measure this peer on the same workload (repeatable)")
    group.add_argument("--gguf-type", nargs="+", choices=peers.GGUF_TYPES, default=["f32"],
                       help="llama.cpp: the GGUF weight types to serve, one run each "
                            "(default: f32)")
    group.add_argument("--install-peer", action="store_true",
                       help="install a missing peer into the peers dir first")
    group.add_argument("--peers-dir", type=Path, default=None,
                       help="where peers are installed (default: $TRITONLLM_PEERS_DIR, else "
                            "~/.cache/tritonllm/peers)")
    group.add_argument("--peer-threads", type=int, default=available_cores(),
                       help="CPU threads each peer uses (default: the cores available)")


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
    peers = _peers_ready(args)  # before anything is measured: a missing peer fails fast
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
    peers_ok = _compare_peers(peers, model_dir, items, args.concurrency, results[-len(
        args.concurrency):], tqdm) if peers else True
    return 0 if generated == asked and peers_ok else 1


def _peers_ready(args) -> list:
    """The peers asked for, installed (with ``--install-peer``) or a clear error."""
    from tritonllm.bench import peers

    root = args.peers_dir or peers.peers_dir()
    chosen = peers.make_peers(list(dict.fromkeys(args.peer)), root, args.gguf_type,
                              args.peer_threads)
    for peer in chosen:
        if peer.installed():
            continue
        if not args.install_peer:
            raise SystemExit(f"--peer {peer.name}: not installed in {peer.root}; add "
                             "--install-peer to install it there")
        print(f"installing {peer.name} into {peer.root}")
        peers.run_steps(peer.install_steps(), peer.root / "install.log")
    return chosen


def _compare_peers(chosen, model_dir, items, levels, ours, tqdm) -> bool:
    """Each peer back to back after our server, on the same items; the ratio table."""
    from tritonllm.bench.peer_bench import format_ratios, measure_peer
    from tritonllm.serve.launcher import free_port

    measured, ok = {}, True
    for peer in chosen:
        runs = measure_peer(peer, model_dir, items, levels, free_port(),
                            peer.root / "logs" / f"{peer.label.replace(' ', '-')}", tqdm)
        for run in runs:
            print(f"{run.result.name}: {len(run.wrong_lengths)} requests with another length"
                  + "".join(f"\n  {w}" for w in run.wrong_lengths[:5]))
            ok = ok and not run.wrong_lengths
        measured[peer.label] = [run.result for run in runs]
    print(format_table(ours + [r for runs in measured.values() for r in runs]))
    print(format_ratios(ours, measured, levels))
    return ok


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
