"""Measure a peer (:mod:`tritonllm.bench.peers`) on the workload of ``tritonllm bench serving``
and print our ratio to it.

The peer gets the same requests as our server (``tritonllm.bench.workload``: the same prompts,
exactly the same output lengths), over the OpenAI API streamed (``POST /v1/completions``,
``stream: true``), in a closed loop at each concurrency. The wire code is the load tester's:
``OpenAIStreamProvider`` (the body, SSE parsing) and ``RequestTrace`` (chunk times; empty
chunks such as llama.cpp's extra final one are not tokens). One fresh HTTP connection per
request (llama.cpp closes it after each stream anyway).

TTFT = submit to the first non-empty chunk; ITL = every gap between consecutive non-empty chunks
(each chunk one token on both peers). A run counts the output tokens the peer reported
(``usage.completion_tokens``, else one per chunk) and flags any request that got a length other
than the one asked for.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tritonllm.bench.engine_bench import RunResult, p50_text
from tritonllm.bench.peers import Peer, PeerServer, run_steps
from tritonllm.bench.workload import WorkItem
from tritonllm.loadtest.metrics import RequestRecord
from tritonllm.loadtest.providers import OpenAIStreamProvider
from tritonllm.loadtest.trace import RequestTrace
from tritonllm.loadtest.workloads import Prompt

REQUEST_TIMEOUT_S = 600.0


def prompt_for(item: WorkItem) -> Prompt:
    """The workload item as a load-test prompt with its output length forced."""
    return Prompt(text=item.prompt, token_ids=(), max_tokens=item.output_tokens,
                  min_tokens=item.output_tokens)


def stream_one(url: str, peer: Peer, item: WorkItem, request_id: str) -> RequestRecord:
    """One streamed completion on a fresh connection, timed per chunk."""
    import requests

    body = peer.body(prompt_for(item), request_id)
    provider = OpenAIStreamProvider(body["model"])  # one per request: it holds the SSE state
    trace = RequestTrace(request_id, peer.name, streamed=True)
    with requests.post(f"{url}{provider.path}", json=body,
                       stream=True, timeout=REQUEST_TIMEOUT_S,
                       headers={"Connection": "close"}) as response:
        if response.status_code != 200:
            return trace.finish(f"HTTP {response.status_code}: {response.text[:200]}")
        trace_lines(response.iter_lines(chunk_size=None), provider, trace)
    return trace.finish()


def trace_lines(lines, provider: OpenAIStreamProvider, trace: RequestTrace) -> None:
    """Feed the stream's SSE lines to the provider, each parsed chunk into the trace."""
    for line in lines:
        if (chunk := provider.parse_line(line)) is not None:
            trace.add(chunk)
    if (chunk := provider.parse_line(b"")) is not None:  # no blank line at the end
        trace.add(chunk)


@dataclass(frozen=True)
class PeerRun:
    """A measured run and the requests whose length was not the one asked for."""

    result: RunResult
    wrong_lengths: list[str]


def output_tokens(record: RequestRecord) -> int:
    """What the peer reported generating; one token per chunk when it reports no usage."""
    return record.output_tokens if record.output_tokens is not None else len(record.chunk_times)


def summarize_run(name: str, items: list[WorkItem], records: list[RequestRecord],
                  seconds: float) -> PeerRun:
    """The run's tok/s over the tokens asked for, latencies in ms, and length mismatches."""
    ttft, itl, wrong = [], [], []
    for item, record in zip(items, records):
        if record.error:
            raise RuntimeError(f"request {record.request_id} failed: {record.error}")
        times = record.chunk_times
        ttft += [1000 * times[0]] if times else []
        itl += [1000 * (b - a) for a, b in zip(times, times[1:])]
        if output_tokens(record) != item.output_tokens:
            wrong.append(f"{record.request_id}: {output_tokens(record)} tokens, "
                         f"asked {item.output_tokens}")
    return PeerRun(RunResult(name, sum(i.output_tokens for i in items), seconds, ttft, itl),
                   wrong)


def peer_run(url: str, peer: Peer, items: list[WorkItem], concurrency: int,
             progress) -> PeerRun:
    """Closed loop of ``concurrency`` streaming requests against the peer."""
    def one(item: WorkItem) -> RequestRecord:
        record = stream_one(url, peer, item, f"peer-c{concurrency}-{item.index}")
        progress.update(1)
        return record

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        records = list(pool.map(one, items))
    seconds = time.perf_counter() - start
    return summarize_run(f"{peer.label}, concurrency {concurrency}", items, records, seconds)


@contextmanager
def started_peer(peer: Peer, model_dir: Path, log_dir: Path, ready_timeout_s: float = 900.0):
    """Prepare the peer's model (GGUF conversion), start its server, warm it up; yields its
    base URL and stops it on exit."""
    from tritonllm.serve.launcher import free_port

    run_steps(peer.prepare_steps(model_dir), log_dir / "prepare.log")
    print(f"starting {peer.label} (log: {log_dir / 'server.log'}) ...", flush=True)
    started, port = time.perf_counter(), free_port()
    with PeerServer(peer.server_command(model_dir, port), peer.server_env(), port,
                    log_dir / "server.log", ready_timeout_s) as server:
        print(f"{peer.label} ready after {time.perf_counter() - started:.0f} s", flush=True)
        stream_one(server.url, peer, WorkItem(-1, "Hello", 4), "peer-warmup")
        yield server.url


def interleave(targets: dict, levels: list[int], rounds: int) -> dict[str, list[list]]:
    """Run every target at each level in turn, ``rounds`` times: round 1 c=1 for each target,
    then c=8 for each ..., so load from elsewhere falls on all targets alike. ``targets`` maps
    a label to ``run(level)``; the result maps it to one list of runs per level."""
    runs = {label: [[] for _ in levels] for label in targets}
    for _ in range(rounds):
        for i, level in enumerate(levels):
            for label, run in targets.items():
                runs[label][i].append(run(level))
    return runs


def merge(runs: list[RunResult]) -> RunResult:
    """Several runs of one target at one level as one: tokens and seconds summed (so tok/s is
    over all rounds), latencies pooled."""
    return RunResult(runs[0].name + (f" ({len(runs)} rounds)" if len(runs) > 1 else ""),
                     sum(r.output_tokens for r in runs), sum(r.seconds for r in runs),
                     [v for r in runs for v in r.ttft_ms], [v for r in runs for v in r.itl_ms])


def format_ratios(ours: list[RunResult], peers: dict[str, list[RunResult]],
                  levels: list[int]) -> str:
    """Per peer and concurrency: its tok/s, ours, our ratio to it, and ITL p50 of both."""
    header = (f"{'peer':34} {'c':>2} {'peer tok/s':>10} {'ours tok/s':>10} {'ours/peer':>9} "
              f"{'ITL p50 peer/ours ms':>21}")
    lines = [header, "-" * len(header)]
    for label, runs in peers.items():
        for level, theirs, mine in zip(levels, runs, ours):
            lines.append(f"{label:34} {level:>2} {theirs.tokens_per_s:10.1f} "
                         f"{mine.tokens_per_s:10.1f} "
                         f"{mine.tokens_per_s / theirs.tokens_per_s:8.2f}x "
                         f"{p50_text(theirs.itl_ms):>10}/{p50_text(mine.itl_ms):<10}")
    return "\n".join(lines)

