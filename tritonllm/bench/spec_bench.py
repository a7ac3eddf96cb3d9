"""Speculative decoding benchmark: the in-process engine with speculation off and on (n-gram by
default; ``--speculative-decoding-mode draft_target --speculative-model-dir DIR`` for a draft
model), in ONE run.

``tritonllm bench speculative`` (``make bench-spec``) serves two workloads as chat prompts,
each request generating exactly its output length (``min_tokens`` = ``max_tokens``): the
input-grounded workload (edit, copy, extract or answer from a given code block or passage;
``tritonllm.bench.workload.grounded_workload``) and the mixed workload. Two engines over the
same weights, alike except ``speculative_decoding_mode``, take turns round by round at each
concurrency (closed loop, streaming). It prints output tokens/s per engine and their ratio,
whether every greedy output is token for token the same, and the acceptance rate and mean
accepted length. Ratios hold across machines; absolute figures depend on the machine and on
what else runs on it.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace

from tritonllm.bench.engine_bench import percentile
from tritonllm.bench.prefix_bench import Side, closed_loop, merged


# llama.cpp's prompt-lookup speculation, matching our 3-token n-grams. Its defaults (a 12-token
# match drafting up to 48) gave 1.05x on the input-grounded workload, 3 / 8 gave 1.31x, and its
# ngram-map-k (3 / 8) 1.15x, ngram-cache 1.26x (c=1, 2 requests each, one run).
LLAMA_CPP_NGRAM = ("--spec-type", "ngram-simple", "--spec-ngram-simple-size-n", "3",
                   "--spec-ngram-simple-size-m", "8")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from tritonllm.serve.engine_options import add_engine_options

    parser.add_argument("--model", default=None,
                        help="a local Hugging Face Llama checkpoint dir (default: SmolLM2)")
    parser.add_argument("--concurrency", default="1,8", help="comma-separated levels")
    parser.add_argument("--requests", type=int, default=8, help="requests per round")
    parser.add_argument("--rounds", type=int, default=2, help="rounds per engine and level")
    parser.add_argument("--llama-cpp", action="store_true",
                        help="also run llama.cpp's server (F32 GGUF, as `make bench-peers` "
                        "installs it) on the same prompts at c=1, without and with its n-gram "
                        f"speculation ({' '.join(LLAMA_CPP_NGRAM)})")
    add_engine_options(parser)


def run(args) -> int:
    from tritonllm.bench.workload import grounded_workload, mixed_workload
    from tritonllm.engine import LLMEngine
    from tritonllm.engine.runner import ModelRunner
    from tritonllm.engine.threads import on_own_thread, thread_budget
    from tritonllm.model_source import resolve_model_dir
    from tritonllm.serve.engine_options import engine_config
    from tritonllm.tokenizer import TextCodec

    asked = engine_config(args)
    mode = asked.speculative_decoding_mode if asked.speculative_decoding_mode != "off" else "ngram"
    config = replace(asked, speculative_decoding_mode="off", speculative_model_dir="")
    levels = [int(c) for c in args.concurrency.split(",")]
    model_dir = resolve_model_dir(args.model)
    codec = TextCodec.from_dir(model_dir)
    print(f"model {model_dir}; {args.rounds} rounds of {args.requests} requests per engine and "
          f"level; {mode}: max_draft_len {config.max_draft_len}, max_matching_ngram_size "
          f"{config.max_matching_ngram_size}, draft model {asked.speculative_model_dir or '-'}; "
          f"engine threads {thread_budget(config.num_threads).reason}")
    runner = on_own_thread(ModelRunner.from_hf_dir, model_dir, config)
    engines = {"off": LLMEngine(runner).start(),
               mode: LLMEngine(runner.sharing_weights(replace(
                   asked, speculative_decoding_mode=mode))).start()}
    ok = True
    workloads = (("input-grounded", grounded_workload(args.requests)),
                 ("mixed", mixed_workload(args.requests)))
    try:
        for name, items in workloads:
            prompts = {item.index: _prompt(codec, item) for item in items}
            for level in levels:
                ok &= _compare(engines, name, prompts, level, args.rounds)
    finally:
        for engine in engines.values():
            engine.shutdown()
    if args.llama_cpp:
        _llama_cpp(model_dir, codec, workloads, args.rounds,
                   thread_budget(config.num_threads).limit)
    return 0 if ok else 1


def _llama_cpp(model_dir, codec, workloads, rounds: int, threads: int) -> None:
    """llama.cpp's server without and with n-gram speculation, c=1, on the chat-rendered
    prompts (completions API, exact lengths with EOS banned), on as many threads as ours."""
    from tritonllm.bench.peer_bench import merge, peer_run, started_peer
    from tritonllm.bench.peers import LlamaCppPeer, peers_dir
    from tritonllm.bench.workload import WorkItem

    root = peers_dir() / "llama.cpp"
    if not LlamaCppPeer(root).installed():
        print(f"llama.cpp: not installed under {root}; `tritonllm bench serving --peer "
              "llama.cpp --install-peer` (or `make bench-peers`) installs it "
              "(skipped)", flush=True)
        return

    def chat_text(item) -> str:
        return codec.tokenizer.apply_chat_template(
            [{"role": "user", "content": item.prompt}], add_generation_prompt=True,
            tokenize=False)

    rendered = {name: [WorkItem(i.index, chat_text(i), i.output_tokens) for i in items]
                for name, items in workloads}
    results = {}
    for extra in ((), LLAMA_CPP_NGRAM):
        peer = LlamaCppPeer(root, "f32", threads=threads, parallel=1, extra_args=extra)
        with started_peer(peer, model_dir, root / "logs" / "spec") as url:
            for name, items in rendered.items():
                runs = [peer_run(url, peer, items, 1, _Quiet()) for _ in range(rounds)]
                results[name, bool(extra)] = merge([run.result for run in runs])
    for name in rendered:
        off, on = results[name, False], results[name, True]
        print(f"llama.cpp F32, {name}, c=1: off {off.tokens_per_s:6.1f} tok/s, "
              f"{LLAMA_CPP_NGRAM[1]} {on.tokens_per_s:6.1f} tok/s, "
              f"ratio {on.tokens_per_s / off.tokens_per_s:.2f}", flush=True)


class _Quiet:
    def update(self, _n: int) -> None:
        pass



def _prompt(codec, item):
    from tritonllm.loadtest.workloads import Prompt

    text = json.dumps([{"role": "user", "content": item.prompt}])
    return Prompt(text=text, token_ids=tuple(codec.encode_chat(text)),
                  max_tokens=item.output_tokens, min_tokens=item.output_tokens, chat=True)


def _compare(engines: dict, workload: str, prompts: dict, level: int, rounds: int) -> bool:
    sides = [Side(name, engine) for name, engine in engines.items()]
    mode = list(engines)[1]
    before = engines[mode].stats()
    for round_ in range(rounds):
        for side in reversed(sides) if round_ % 2 else sides:
            side.results.append(closed_loop(side, prompts, level, f"{workload}-{level}-{round_}"))
    stats = engines[mode].stats()
    drafts = stats.spec_drafts - before.spec_drafts
    drafted = stats.spec_draft_tokens - before.spec_draft_tokens
    accepted = stats.spec_accepted_tokens - before.spec_accepted_tokens
    off, on = (merged(side) for side in sides)
    same = sum(sides[0].outputs[i] == sides[1].outputs[i] for i in prompts)
    print(f"{workload}, c={level}: off {off.tokens_per_s:6.1f} tok/s, {mode} "
          f"{on.tokens_per_s:6.1f} tok/s, ratio {on.tokens_per_s / off.tokens_per_s:.2f}; "
          f"ITL p50 {percentile(off.itl_ms, 50) or 0:.0f} / "
          f"{percentile(on.itl_ms, 50) or 0:.0f} ms; "
          f"acceptance {accepted / max(drafted, 1):.2f}, mean accepted per draft "
          f"{accepted / max(drafts, 1):.2f}; identical greedy outputs {same} of {len(prompts)}",
          flush=True)
    return same == len(prompts)
