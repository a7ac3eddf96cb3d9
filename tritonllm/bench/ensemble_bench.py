"""``tritonllm bench ensemble``: how many streamed tokens/s the ensemble's pre/postprocessing carry.

A real tritonserver serves the real ``preprocessing`` and ``postprocessing`` models and the
real ``ensemble``; only the ``tensorrt_llm`` step is SYNTHETIC (:mod:`tritonllm.bench.synthetic`:
it replays fixed token ids with spaces, emoji and CJK, as fast as it can; benchmark only, never
model results). For each configuration (postprocessing instances, ``stream_interval``, and the
stateless vs the stateful per-request detokenizer) the server is started afresh, and a closed
loop of ``--concurrency`` streaming requests of ``--tokens`` tokens each goes through gRPC
(one bidirectional stream, as tensorrtllm_backend's clients do) and then HTTP SSE
(``generate_stream``, one connection per request). It prints, per run:

- streamed tokens/s and responses/s through the ensemble, client to client;
- whether every request's streamed deltas concatenated to the exact expected text;
- from Triton's own statistics (``/v2/models/<m>/stats``, differences over the run): the
  per-response cost of postprocessing (compute, and request time: queue + compute) and the
  responses per ``execute`` (dynamic batching); preprocessing's cost per request;
- a one-token request's median latency through the ensemble and straight to ``tensorrt_llm``
  (what the ensemble adds);
- CPU time per streamed response of each process (tritonserver, each model's stubs, this
  client; from /proc), and the tokens/s that total would allow on two otherwise idle cores
  (an estimate for a machine shared with other work, labelled as one).

The client runs on the same cores as the server: figures are for the whole machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tritonllm.bench.ensemble_load import grpc_run, one_token_latency, sse_run

SYNTHETIC_MODEL = Path(__file__).resolve().parent / "synthetic_model" / "model.py"


@dataclass(frozen=True)
class Setup:
    """One server configuration. ``stateful``: the engine sends no ``preceding_ids`` and clients
    ask for the per-request detokenizer (all responses of a request at one instance)."""

    post_instances: int
    stream_interval: int = 1
    stateful: bool = False
    pre_instances: int = 1

    @property
    def label(self) -> str:
        mode = "stateful (routed to 1 instance)" if self.stateful else "stateless"
        return (f"post x{self.post_instances}, pre x{self.pre_instances}, "
                f"stream_interval {self.stream_interval}, {mode}")


@dataclass
class RunResult:
    setup: Setup
    protocol: str
    requests: int
    tokens: int
    responses: int
    seconds: float
    exact: int
    stats: dict
    cpu: dict

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds


def render_synthetic_repository(out: Path, tokenizer_dir: Path, setup: Setup,
                                max_batch_size: int = 64) -> Path:
    """The real repository's configs and pre/postprocessing, with the SYNTHETIC engine step."""
    from tritonllm.repo.render import RepoSettings, render_repository

    settings = RepoSettings(
        tokenizer_dir=str(tokenizer_dir), max_input_len=1024, max_seq_len=8192,
        triton_max_batch_size=max_batch_size, preprocessing_instances=setup.pre_instances,
        postprocessing_instances=setup.post_instances, stream_interval=setup.stream_interval,
        cpu_engine_parameters={"send_preceding": "false" if setup.stateful else "true",
                               "synthetic": "true"})
    repo = render_repository(settings, out)
    (repo / "tensorrt_llm" / "1" / "model.py").write_text(SYNTHETIC_MODEL.read_text())
    return repo


def expected_text(codec, tokens: int) -> str:
    """What a request for ``tokens`` tokens must stream: the replay ids decoded at once."""
    from tritonllm.bench.synthetic import replay_ids
    from tritonllm.tokenizer import IncrementalDetokenizer

    return IncrementalDetokenizer(codec).add(replay_ids(codec, tokens))


# --- Triton's statistics ----------------------------------------------------------------------

def model_stats(http_url: str, model: str) -> dict:
    with urllib.request.urlopen(f"http://{http_url}/v2/models/{model}/stats", timeout=10) as r:
        stats = json.load(r)["model_stats"][0]
    infer = stats["inference_stats"]
    # Per-request compute figures count a batched execute once for each request in it; the
    # per-batch-size figures count it once, which is the time the instance was busy.
    busy = sum(int(batch[key]["ns"]) for batch in stats.get("batch_stats", [])
               for key in ("compute_input", "compute_infer", "compute_output"))
    return {"inferences": int(stats["inference_count"]),
            "executions": int(stats["execution_count"]),
            "busy_ns": busy, "success_ns": int(infer["success"]["ns"]),
            "queue_ns": int(infer["queue"]["ns"])}


def stats_delta(before: dict, after: dict) -> dict:
    return {model: {k: after[model][k] - before[model][k] for k in after[model]} for model in after}


def per_item_us(delta: dict) -> dict:
    """Per inference (response for postprocessing, request for preprocessing), microseconds."""
    n = max(delta["inferences"], 1)
    return {"compute_us": delta["busy_ns"] / n / 1e3, "request_us": delta["success_ns"] / n / 1e3,
            "queue_us": delta["queue_ns"] / n / 1e3,
            "per_execute": delta["inferences"] / max(delta["executions"], 1)}


# --- CPU time per process ------------------------------------------------------------------

PROCESS_GROUPS = ("tritonserver", "tensorrt_llm", "preprocessing", "postprocessing", "client")


def cpu_by_group(server_pid: int) -> dict[str, float]:
    """CPU seconds used so far by tritonserver (frontends, ensemble scheduler, backend host
    side), each model's stub processes (summed over instances) and this client process."""
    from tritonllm.serve import procfs

    used = dict.fromkeys(PROCESS_GROUPS, 0.0)
    used["tritonserver"] = procfs.cpu_seconds(server_pid)
    used["client"] = time.process_time()
    for pid, args in procfs.descendants(server_pid).items():
        for model in PROCESS_GROUPS[1:4]:
            if any(f"/{model}/1/model.py" in arg for arg in args):
                used[model] += procfs.cpu_seconds(pid)
    return used


# --- the runs ----------------------------------------------------------------------------------

def measure(setup: Setup, codec, tokenizer_dir: Path, args) -> list[RunResult]:
    from tritonllm.serve.launcher import Ports, TritonServer

    expected = expected_text(codec, args.tokens)
    results = []
    with tempfile.TemporaryDirectory(prefix="tritonllm-bench-ensemble-") as tmp:
        repo = render_synthetic_repository(Path(tmp) / "repo", tokenizer_dir, setup)
        with TritonServer(repo, Ports.free(), log_file=Path(tmp) / "tritonserver.log") as server:
            grpc_run(server.grpc_url, setup.stateful, 8, 8, 8, expected_text(codec, 8))  # warm-up
            ensemble_ms, direct_ms = one_token_latency(server.grpc_url, codec)
            print(f"{setup.label:<58} one-token request, median: ensemble {ensemble_ms:.1f} ms, "
                  f"tensorrt_llm directly {direct_ms:.1f} ms, the ensemble adds "
                  f"{ensemble_ms - direct_ms:.1f} ms", flush=True)
            for protocol, run in (("grpc", grpc_run), ("http-sse", sse_run)):
                if protocol not in args.protocols:
                    continue
                url = server.grpc_url if protocol == "grpc" else server.http_url
                before = {m: model_stats(server.http_url, m)
                          for m in ("preprocessing", "postprocessing")}
                cpu_before = cpu_by_group(server.pid)
                responses, exact, seconds = run(url, setup.stateful, args.requests,
                                                args.concurrency, args.tokens, expected)
                cpu_after = cpu_by_group(server.pid)
                after = {m: model_stats(server.http_url, m)
                         for m in ("preprocessing", "postprocessing")}
                cpu = {k: cpu_after[k] - cpu_before[k] for k in PROCESS_GROUPS}
                results.append(RunResult(setup, protocol, args.requests,
                                         args.requests * args.tokens, responses, seconds, exact,
                                         stats_delta(before, after), cpu))
                print(format_row(results[-1]), flush=True)
    return results


HEADER = (f"{'configuration':<58} {'protocol':<9} {'tokens/s':>9} {'resp/s':>8} {'exact':>9} "
          f"{'post us/resp':>12} {'post req us':>11} {'resp/exec':>9} {'pre us/req':>10}")


def format_row(r: RunResult) -> str:
    post, pre = per_item_us(r.stats["postprocessing"]), per_item_us(r.stats["preprocessing"])
    return (f"{r.setup.label:<58} {r.protocol:<9} {r.tokens_per_s:>9.0f} "
            f"{r.responses / r.seconds:>8.0f} {f'{r.exact}/{r.requests}':>9} "
            f"{post['compute_us']:>12.0f} {post['request_us']:>11.0f} "
            f"{post['per_execute']:>9.1f} {pre['compute_us']:>10.0f}")


CPU_HEADER = (f"{'configuration':<58} {'protocol':<9} "
              + " ".join(f"{g[:13]:>13}" for g in PROCESS_GROUPS)
              + f" {'total':>7} {'2 idle cores':>13}")


def format_cpu_row(r: RunResult) -> str:
    """CPU microseconds per streamed response by process, and the responses/s (tokens/s) that
    cost would allow on two cores with nothing else running (an estimate, labelled so)."""
    per = {g: r.cpu[g] / max(r.responses, 1) * 1e6 for g in PROCESS_GROUPS}
    total = sum(per.values())
    ceiling = 2e6 / total * r.tokens / max(r.responses, 1) if total else 0.0
    return (f"{r.setup.label:<58} {r.protocol:<9} "
            + " ".join(f"{per[g]:>13.0f}" for g in PROCESS_GROUPS)
            + f" {total:>7.0f} {ceiling:>8.0f} tok/s")


def setups(args) -> list[Setup]:
    chosen = [Setup(n, args.stream_interval, pre_instances=args.pre_instances)
              for n in args.post_instances]
    if args.stateful:
        chosen.insert(0, Setup(1, args.stream_interval, stateful=True,
                               pre_instances=args.pre_instances))
    chosen += [Setup(max(args.post_instances), n, pre_instances=args.pre_instances)
               for n in args.extra_stream_intervals]
    return chosen


def add_arguments(parser: argparse.ArgumentParser) -> None:
    ints = lambda text: [int(x) for x in text.split(",") if x]  # noqa: E731
    parser.add_argument("--model", default=None, help="tokenizer source (default: SmolLM2)")
    parser.add_argument("--requests", type=int, default=64, help="requests per run")
    parser.add_argument("--concurrency", type=int, default=32, help="requests in flight")
    parser.add_argument("--tokens", type=int, default=256, help="streamed tokens per request")
    parser.add_argument("--post-instances", type=ints, default=[1, 2],
                        help="postprocessing instance counts to compare (stateless)")
    parser.add_argument("--pre-instances", type=int, default=1)
    parser.add_argument("--stream-interval", type=int, default=1,
                        help="tokens per streamed response (TensorRT-LLM's stream_interval)")
    parser.add_argument("--extra-stream-intervals", type=ints, default=[4, 16],
                        help="also run the largest instance count with these intervals")
    parser.add_argument("--stateful", action=argparse.BooleanOptionalAction, default=True,
                        help="also run the stateful detokenizer at one instance (the 'route')")
    parser.add_argument("--protocols", type=lambda t: t.split(","), default=["grpc", "http-sse"])
    parser.add_argument("--plot", type=Path, default=None, help="write a bar chart (PNG)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="repeat the configurations, interleaved; the summary takes medians")


def run(args) -> int:
    from tritonllm.model_source import resolve_model_dir
    from tritonllm.tokenizer import TextCodec

    tokenizer_dir = resolve_model_dir(args.model)
    codec = TextCodec.from_dir(tokenizer_dir)
    print(f"SYNTHETIC tensorrt_llm step (replayed token ids; benchmark only), real pre/post"
          f"processing and ensemble; {args.requests} requests x {args.tokens} tokens, "
          f"concurrency {args.concurrency}\n{HEADER}", flush=True)
    results = [r for _ in range(args.rounds) for setup in setups(args)
               for r in measure(setup, codec, tokenizer_dir, args)]
    print(f"\n{HEADER}\n" + "\n".join(format_row(r) for r in results))
    print(f"\nCPU microseconds per streamed response, by process\n{CPU_HEADER}\n"
          + "\n".join(format_cpu_row(r) for r in results))
    _print_scaling(results)
    if args.plot:
        print(f"plot: {plot(results, args.plot)}")
    return 0 if all(r.exact == r.requests for r in results) else 1


def medians(results: list[RunResult], protocol: str) -> dict[Setup, float]:
    """Median tokens/s per configuration over the rounds."""
    values: dict[Setup, list[float]] = {}
    for r in results:
        if r.protocol == protocol:
            values.setdefault(r.setup, []).append(r.tokens_per_s)
    return {setup: statistics.median(v) for setup, v in values.items()}


def _print_scaling(results: list[RunResult]) -> None:
    """Median tokens/s per configuration over the rounds, and its ratio to stateless post x1."""
    print("\nmedian over rounds (ratios within this run)")
    for protocol in ("grpc", "http-sse"):
        found = medians(results, protocol)
        base = next((v for k, v in found.items() if k.post_instances == 1
                     and k.stream_interval == 1 and not k.stateful), None)
        for setup, value in found.items():
            ratio = f"{value / base:5.2f}x of stateless post x1" if base else ""
            print(f"{protocol:<9} {setup.label:<58} {value:>8.0f} tok/s  {ratio}")


def plot(results: list[RunResult], path: Path) -> Path:
    """Median streamed tokens/s per configuration, one bar group per protocol (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    protocols = [p for p in ("grpc", "http-sse") if medians(results, p)]
    setups_seen = list(medians(results, protocols[0]))
    fig, ax = plt.subplots(figsize=(9, 4))
    width = 0.8 / len(protocols)
    for i, protocol in enumerate(protocols):
        found = medians(results, protocol)
        ax.bar([x + i * width for x in range(len(setups_seen))],
               [found.get(s, 0) for s in setups_seen], width, label=protocol)
    ax.set_xticks([x + width * (len(protocols) - 1) / 2 for x in range(len(setups_seen))])
    ax.set_xticklabels([s.label.replace(" (routed to 1 instance)", "\n(routed)")
                        .replace(", ", "\n") for s in setups_seen], fontsize=7)
    ax.set_ylabel("streamed tokens/s (median)")
    ax.set_title("Ensemble capacity, SYNTHETIC engine step (tritonllm bench ensemble)")
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tritonllm bench ensemble",
                                     description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
