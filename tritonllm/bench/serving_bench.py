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

``--peer vllm`` / ``--peer llama.cpp`` / ``--peer openvino`` (repeatable) also starts the peers
a CPU user would pick instead (``tritonllm.bench.peers``: vLLM CPU, llama.cpp's server on GGUFs
of ``--gguf-type``, OpenVINO GenAI on IR of ``--openvino-weights``) beside our server, sends
them the same workload, and prints our ratio to each (``tritonllm.bench.peer_bench``). All
servers are up at once (only one is sent requests at a time) and the runs interleave: ours at
c=1, each peer at c=1, ours at c=8, each peer at c=8, ``--rounds`` times, so load from other
processes falls on all of them alike.
``--install-peer`` installs a missing peer into the cache dir first (vLLM: a few minutes;
llama.cpp: a build of ``llama-server``, 10+ minutes; OpenVINO: a few minutes).

``--workload long-prompt`` sends prefill-bound requests instead (``long_prompt_workload``: a
document of 1,024 or 4,096 tokens, each request's its own, and a 32-token answer), one at a time,
and prints each target's time to first token and prompt tokens/s per prompt length.

``--neighbours N`` also runs every target (ours and each peer) with N busy processes beside it,
interleaved with the quiet runs, and prints contended / quiet per target and concurrency;
``--server-cpus 0`` starts the servers on those CPUs only (``tritonllm.bench.contention``).
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ThreadPoolExecutor

from pathlib import Path

from tritonllm.bench import engine_bench
from tritonllm.bench.engine_bench import RunResult, _baselines, format_table
from tritonllm.bench.contention import (children_on, contended, contended_label,
                                        format_contention, parse_cpus)
from tritonllm.bench.workload import (LONG_PROMPT_TOKENS, WorkItem, long_prompt_workload,
                                      mixed_workload)
from tritonllm.engine.threads import available_cores, thread_budget


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
    from tritonllm.bench.openvino_peer import OPENVINO_WEIGHTS

    engine_bench.add_arguments(parser)
    parser.add_argument("--workload", choices=WORKLOADS, default="mixed",
                        help="mixed (default): short prompts, outputs of 16-128 tokens; "
                             "long-prompt: 1k- and 4k-token documents, 32-token answers, at "
                             "concurrency 1 (raise --max-input-len to 4096)")
    group = parser.add_argument_group("peers (optional, installed outside the repo)")
    group.add_argument("--peer", action="append", choices=peers.PEER_NAMES, default=[],
                       help="also measure this peer on the same workload (repeatable)")
    group.add_argument("--gguf-type", nargs="+", choices=peers.GGUF_TYPES, default=["f32"],
                       help="llama.cpp: the GGUF weight types to serve, one run each "
                            "(default: f32)")
    group.add_argument("--openvino-weights", nargs="+", choices=OPENVINO_WEIGHTS,
                       default=["fp32"],
                       help="openvino: the IR weight formats to serve, one run each (fp32; "
                            "int8: per-channel weights; int4: groups of 64; default: fp32)")
    group.add_argument("--install-peer", action="store_true",
                       help="install a missing peer into the peers dir first")
    group.add_argument("--peers-dir", type=Path, default=None,
                       help="where peers are installed (default: $TRITONLLM_PEERS_DIR, else "
                            "~/.cache/tritonllm/peers)")
    group.add_argument("--peer-threads", type=int, default=available_cores(),
                       help="CPU threads each peer uses (default: the cores available)")
    group.add_argument("--ready-timeout", type=float, default=900.0,
                       help="seconds each server (ours and the peers') may take to start "
                            "(default 900: vLLM compiles for minutes on a busy machine)")
    group.add_argument("--rounds", type=int, default=1,
                       help="repeat the interleaved runs this many times; tok/s is over all "
                            "rounds (default 1)")
    busy = parser.add_argument_group("a busy machine (tritonllm.bench.contention)")
    busy.add_argument("--neighbours", type=int, default=0,
                      help="also run every target with N busy processes beside it and print "
                           "contended / quiet (default 0: quiet runs only)")
    busy.add_argument("--server-cpus", default=None,
                      help="start the servers (ours and the peers) on these CPUs only, e.g. 0 "
                           "or 0-1 (default: all of this process's)")


def run(args) -> int:
    import torch
    from tqdm import tqdm

    from tritonllm.bench.peer_bench import merge
    from tritonllm.serve.engine_options import engine_config
    from tritonllm.model_source import resolve_model_dir
    from tritonllm.tokenizer import TextCodec

    if args.rounds < 1:
        raise ValueError(f"--rounds: must be >= 1, got {args.rounds}")
    if args.neighbours < 0:
        raise ValueError(f"--neighbours: must be >= 0, got {args.neighbours}")
    server_cpus = parse_cpus(args.server_cpus)
    config = engine_config(args)
    model_dir = resolve_model_dir(args.model)
    items = _workload(args, model_dir, config)
    peers = _peers_ready(args)  # before anything is measured: a missing peer fails fast
    print(f"model {model_dir}\n{len(items)} requests, {sum(i.output_tokens for i in items)} "
          "output tokens" + (f", servers on CPUs {sorted(server_cpus)}" if server_cpus else ""))
    with children_on(server_cpus):  # the servers' engine sizes its threads from these CPUs
        print(f"engine threads {thread_budget(config.num_threads).reason}")
        runs, generated, wrong = _served(model_dir, config, items, args.concurrency, tqdm,
                                         peers, args.rounds, args.ready_timeout,
                                         args.neighbours)
    busy = _pop_contended(runs, args.neighbours)
    ours = [merge(level_runs) for level_runs in runs.pop(OURS)]
    results = ours
    if not args.skip_transformers:
        torch.set_num_threads(thread_budget(config.num_threads).limit)  # as the engine's
        codec = TextCodec.from_dir(model_dir)
        prompts = [codec.encode(item.prompt) for item in items]
        results = _baselines(model_dir, prompts, items, args.static_batch_size, codec.pad_id,
                             tqdm) + results
    print(format_table(results))
    asked = (args.rounds * len(args.concurrency) * sum(i.output_tokens for i in items)
             * (2 if args.neighbours else 1))
    print(f"server counted {generated} generated tokens for the measured runs "
          f"(the workload asked for {asked})")
    if peers:
        _print_peers(ours, runs, wrong, args.concurrency)
    if args.workload == "long-prompt":
        print(format_prefill(items, {OURS: ours[0], **{label: merge(per_level[0])
                                                       for label, per_level in runs.items()}}))
    if busy:
        quiet = {OURS: ours, **{label: [merge(r) for r in per_level]
                                for label, per_level in runs.items()}}
        print(format_contention(quiet, busy, args.concurrency, args.neighbours))
    return 0 if generated == asked and not wrong else 1


WORKLOADS = ("mixed", "long-prompt")


def _workload(args, model_dir, config) -> list[WorkItem]:
    """The items of ``--workload``; the long-prompt one checks what it needs first."""
    if args.workload == "mixed":
        return mixed_workload(args.requests)
    from tritonllm.tokenizer import TextCodec

    if args.concurrency != [1] or args.rounds != 1 or args.neighbours:
        raise ValueError("--workload long-prompt: runs at --concurrency 1, one round, without "
                         "--neighbours (a repeated prompt would be a prefix-cache hit)")
    if config.max_input_len < max(LONG_PROMPT_TOKENS):
        raise ValueError(f"--workload long-prompt: prompts of {max(LONG_PROMPT_TOKENS)} tokens "
                         f"exceed --max-input-len {config.max_input_len}")
    return long_prompt_workload(TextCodec.from_dir(model_dir).encode, args.requests)


def format_prefill(items: list[WorkItem], results: dict[str, RunResult],
                   lengths: tuple[int, ...] = LONG_PROMPT_TOKENS) -> str:
    """Per target and nominal prompt length (``lengths``; a prompt of whole words may fall a
    token or two short): the median time to first token, and the median of each prompt's
    tokens over its TTFT (a run at concurrency 1 lists its TTFTs in item order)."""
    import statistics

    def nominal(item: WorkItem) -> int:
        return min(n for n in lengths if item.prompt_tokens <= n)
    used = sorted({nominal(item) for item in items})
    head = f"{'prefill: TTFT p50 ms (prompt tok/s)':52}" + "".join(
        f"{f'{n} tokens':>22}" for n in used)
    lines = [head, "-" * len(head)]
    for label, result in results.items():
        cells = []
        for n in used:
            pairs = [(item.prompt_tokens, t) for item, t in zip(items, result.ttft_ms)
                     if nominal(item) == n]
            ttft = statistics.median(t for _, t in pairs)
            rate = statistics.median(1000 * tokens / t for tokens, t in pairs)
            cells.append(f"{f'{ttft:.0f} ({rate:.0f})':>22}")
        lines.append(f"{label[:52]:52}" + "".join(cells))
    return "\n".join(lines)


def _pop_contended(runs: dict, neighbours: int) -> dict:
    """The contended runs, taken out of ``runs`` (label -> merged run per level)."""
    from tritonllm.bench.peer_bench import merge

    if not neighbours:
        return {}
    return {label: [merge(r) for r in runs.pop(contended_label(label, neighbours))]
            for label in [k for k in runs if not k.endswith(" busy")]}


OURS = "ours"


def _peers_ready(args) -> list:
    """The peers asked for, installed (with ``--install-peer``) or a clear error."""
    from tritonllm.bench import peers

    root = args.peers_dir or peers.peers_dir()
    chosen = peers.make_peers(list(dict.fromkeys(args.peer)), root, args.gguf_type,
                              args.peer_threads, args.openvino_weights)
    for peer in chosen:
        if peer.installed():
            continue
        if not args.install_peer:
            raise SystemExit(f"--peer {peer.name}: not installed in {peer.root}; add "
                             "--install-peer to install it there")
        print(f"installing {peer.name} into {peer.root}")
        peers.run_steps(peer.install_steps(), peer.root / "install.log")
    return chosen


def _print_peers(ours: list[RunResult], runs: dict, wrong: list[str], levels) -> None:
    """The peers' table, any request that got another length, our ratio to each peer."""
    from tritonllm.bench.peer_bench import format_ratios, merge

    theirs = {label: [merge(level_runs) for level_runs in per_level]
              for label, per_level in runs.items()}
    print(format_table([r for per_level in theirs.values() for r in per_level]))
    print(f"peer requests with another output length than asked: {len(wrong)}"
          + "".join(f"\n  {w}" for w in wrong[:10]))
    print(format_ratios(ours, theirs, levels))


def _served(model_dir, config, items, levels, tqdm, peers=(), rounds=1, ready_timeout_s=300.0,
            neighbours=0):
    """Start our server and each peer's, warm them up, then measure every one at each level,
    interleaved (``peer_bench.interleave``), each also with ``neighbours`` busy processes beside
    it when asked. Returns the runs (label -> per level -> rounds), the tokens our server
    counted, and the peers' requests of another length."""
    import tempfile
    from contextlib import ExitStack

    from tritonllm.bench.peer_bench import interleave, started_peer
    from tritonllm.serve.cpu import CpuDeployment
    from tritonllm.serve.launcher import Ports, TritonServer
    from tritonllm.serve.metrics import engine_stats

    wrong: list[str] = []
    with tempfile.TemporaryDirectory(prefix="tritonllm-bench-") as tmp, ExitStack() as stack:
        deployment = CpuDeployment(model=str(model_dir), engine=config,
                                   repo_dir=Path(tmp) / "model_repository")
        server = TritonServer(deployment.prepare(), Ports.free())
        stack.push(server.start(ready_timeout_s))  # its __exit__ stops it
        _served_warmup(server.grpc_url)
        targets = {OURS: _our_target(server.grpc_url, items, tqdm)}
        for peer in peers:
            log_dir = peer.root / "logs" / peer.label.replace(" ", "-")
            url = stack.enter_context(started_peer(peer, model_dir, log_dir, ready_timeout_s))
            targets[peer.label] = _peer_target(url, peer, items, wrong, tqdm)
        if neighbours:
            targets.update({contended_label(label, neighbours): contended(run, neighbours)
                            for label, run in list(targets.items())})
        time.sleep(1.0)  # the engine gauges refresh twice a second
        before = engine_stats(server.metrics_url)["generated_tokens"]
        runs = interleave(targets, levels, rounds)
        time.sleep(1.0)
        generated = engine_stats(server.metrics_url)["generated_tokens"] - before
    return runs, int(generated), wrong


def _our_target(url: str, items, tqdm):
    def run(level: int) -> RunResult:
        with tqdm(total=len(items), desc=f"server c={level}", leave=False) as progress:
            return _said(served_run(url, items, level, progress))
    return run


def _said(result: RunResult) -> RunResult:
    """Print one run as it ends, so an interrupted benchmark still shows what it measured."""
    print(f"  {result.name}: {result.tokens_per_s:.1f} tok/s over {result.seconds:.0f} s",
          flush=True)
    return result


def _peer_target(url: str, peer, items, wrong: list[str], tqdm):
    from tritonllm.bench.peer_bench import peer_run

    def run(level: int) -> RunResult:
        with tqdm(total=len(items), desc=f"{peer.label} c={level}", leave=False) as progress:
            measured = peer_run(url, peer, items, level, progress)
        wrong.extend(measured.wrong_lengths)
        return _said(measured.result)
    return run


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
