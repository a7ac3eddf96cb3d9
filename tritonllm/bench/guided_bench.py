"""Structured outputs, measured through a real tritonserver and the OpenAI frontend (the openai
SDK), on the CPU engine:

- validity: every schema of :mod:`tritonllm.loadtest.json_schemas` × {greedy, temperature
  1.0}, each reply parsed and validated with ``jsonschema``; the SDK's ``parse()`` with a
  Pydantic model; a tool-call round trip (call, tool result, answer), streamed and not;
- cost: completion tokens/s of the same requests at one concurrency, with ``response_format``
  (guided, grammars already compiled) and without, made to generate as many tokens each,
  interleaved round by round; the ratio is what guided decoding costs;
- compile time: each schema's first compile and a cached lookup, in-process.

Ratios come from one run on one machine; absolute figures depend on it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from tritonllm.loadtest.json_schemas import SCHEMA_TASKS, SchemaTask

TEMPERATURES = (0.0, 1.0)
SEED = 1234


@dataclass
class Validity:
    requests: int = 0
    valid: int = 0
    cut_off: int = 0  # ended on max_tokens: the budget was too small, not the output wrong
    failures: list[str] = field(default_factory=list)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=None, help="model directory (default: SmolLM2)")
    parser.add_argument("--concurrency", type=int, default=8, help="for the cost runs")
    parser.add_argument("--max-tokens", type=int, default=320,
                        help="budget of the validity requests")
    parser.add_argument("--cost-max-tokens", type=int, default=64)
    parser.add_argument("--cost-requests", type=int, default=32, help="per run")
    parser.add_argument("--rounds", type=int, default=2, help="guided/unguided pairs")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")


def run(args) -> int:
    import openai
    from tqdm import tqdm

    from tritonllm.model_source import resolve_model_dir
    from tritonllm.openai import FrontendProcess, FrontendSettings
    from tritonllm.serve.cpu import CpuDeployment
    from tritonllm.serve.launcher import Ports, TritonServer, free_port

    model_dir = resolve_model_dir(args.model)
    with tempfile.TemporaryDirectory(prefix="tritonllm-guided-") as tmp, ExitStack() as stack:
        deployment = CpuDeployment(model=str(model_dir), repo_dir=Path(tmp) / "repo")
        server = TritonServer(deployment.prepare(), Ports.free())
        stack.push(server.start(300))
        settings = FrontendSettings(triton_url=server.grpc_url, model_name=model_dir.name,
                                    port=free_port(), tokenizer=str(model_dir))
        frontend = stack.enter_context(FrontendProcess(settings))
        sdk = stack.enter_context(openai.OpenAI(base_url=f"{frontend.url}/v1",
                                                api_key="unused", max_retries=0, timeout=600))
        model = model_dir.name
        validity = _validity(sdk, model, args.max_tokens, args.concurrency, tqdm)
        checks = {"sdk parse()": _sdk_parse(sdk, model),
                  "tool round trip": _tool_round_trip(sdk, model)}
        cost = _cost(sdk, model, args, tqdm)
    compile_ms = _compile_times(model_dir)
    figures = _figures(validity, checks, cost, compile_ms, args)
    print(_report(figures))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    ok = validity.valid == validity.requests and all(checks.values())
    return 0 if ok else 1


def _format(task: SchemaTask) -> dict:
    return {"type": "json_schema",
            "json_schema": {"name": task.name, "schema": task.schema, "strict": True}}


def _validity(sdk, model: str, max_tokens: int, concurrency: int, tqdm) -> Validity:
    import jsonschema

    result = Validity()
    jobs = [(task, t) for task in SCHEMA_TASKS for t in TEMPERATURES]

    def one(job):
        task, temperature = job
        reply = sdk.chat.completions.create(
            model=model, messages=task.messages(), max_tokens=max_tokens, temperature=temperature,
            seed=SEED, response_format=_format(task))
        return task, temperature, reply.choices[0]

    with ThreadPoolExecutor(concurrency) as pool, \
            tqdm(total=len(jobs), desc="validity", leave=False) as bar:
        for task, temperature, choice in pool.map(one, jobs):
            bar.update()
            result.requests += 1
            label = f"{task.name} (temperature {temperature:g})"
            if choice.finish_reason == "length":
                result.cut_off += 1
                result.failures.append(f"{label}: cut off at max_tokens")
                continue
            try:
                jsonschema.validate(json.loads(choice.message.content), task.schema)
                result.valid += 1
            except (ValueError, jsonschema.ValidationError) as exc:
                result.failures.append(f"{label}: {str(exc).splitlines()[0]}")
    return result


def _sdk_parse(sdk, model: str) -> bool:
    from pydantic import BaseModel, Field

    class City(BaseModel):
        name: str = Field(max_length=24)
        population: int = Field(ge=0)

    reply = sdk.chat.completions.parse(
        model=model, max_tokens=80, temperature=0, response_format=City,
        messages=[{"role": "user", "content": "Name the largest city of France and its "
                                              "population."}])
    return isinstance(reply.choices[0].message.parsed, City)


def _tool_round_trip(sdk, model: str) -> bool:
    weather = {"type": "function", "function": {
        "name": "get_weather", "parameters": {
            "type": "object", "properties": {"city": {"type": "string", "maxLength": 24}},
            "required": ["city"], "additionalProperties": False}}}
    ask = [{"role": "user", "content": "What is the weather in Paris?"}]
    first = sdk.chat.completions.create(model=model, messages=ask, max_tokens=60,
                                        temperature=0, tools=[weather], tool_choice="required")
    calls = first.choices[0].message.tool_calls or []
    if len(calls) != 1 or "city" not in json.loads(calls[0].function.arguments):
        return False
    history = ask + [first.choices[0].message.model_dump(exclude_none=True),
                     {"role": "tool", "tool_call_id": calls[0].id, "content": '{"celsius": 18}'}]
    answer = dict(model=model, messages=history, max_tokens=32, temperature=0, tools=[weather],
                  tool_choice="none")
    whole = sdk.chat.completions.create(**answer).choices[0].message.content or ""
    streamed = "".join(c.choices[0].delta.content or ""
                       for c in sdk.chat.completions.create(**answer, stream=True) if c.choices)
    return bool(whole.strip()) and streamed == whole


def _cost(sdk, model: str, args, tqdm) -> dict:
    """Each round: the guided requests, then the same prompts unguided, each made to generate
    exactly as many tokens as its guided reply did (``min_tokens`` = ``max_tokens``), so both
    runs do the same work but for the guiding."""
    tasks = [SCHEMA_TASKS[i % len(SCHEMA_TASKS)] for i in range(args.cost_requests)]
    runs: dict[str, list[float]] = {"guided": [], "unguided": []}

    def guided(task, _):
        return sdk.chat.completions.create(
            model=model, messages=task.messages(), max_tokens=args.cost_max_tokens, temperature=0,
            response_format=_format(task)).usage.completion_tokens

    def unguided(task, tokens):
        return sdk.chat.completions.create(
            model=model, messages=task.messages(), max_tokens=tokens, temperature=0,
            extra_body={"min_tokens": tokens}).usage.completion_tokens

    for round_index in range(args.rounds):
        counts = [None] * len(tasks)
        for kind, one in (("guided", guided), ("unguided", unguided)):
            with ThreadPoolExecutor(args.concurrency) as pool, \
                    tqdm(total=len(tasks), desc=f"{kind} round {round_index + 1}",
                         leave=False) as bar:
                start = time.perf_counter()
                done = []
                for count in pool.map(one, tasks, counts):
                    done.append(count)
                    bar.update()
                runs[kind].append(sum(done) / (time.perf_counter() - start))
            counts = done
    return runs


def _compile_times(model_dir: Path) -> dict:
    from tritonllm.engine.guided import Grammars, Guide

    grammars = Grammars(model_dir, _vocab_size(model_dir), [])
    first, cached = [], []
    for task in SCHEMA_TASKS:
        guide = Guide("json_schema", json.dumps(task.schema))
        start = time.perf_counter()
        grammars.compile(guide)
        first.append((time.perf_counter() - start) * 1e3)
        start = time.perf_counter()
        grammars.compile(guide)
        cached.append((time.perf_counter() - start) * 1e3)
    return {"first_median_ms": statistics.median(first), "first_max_ms": max(first),
            "cached_median_ms": statistics.median(cached)}


def _vocab_size(model_dir: Path) -> int:
    return json.loads((model_dir / "config.json").read_text())["vocab_size"]


def _figures(validity: Validity, checks: dict, cost: dict, compile_ms: dict, args) -> dict:
    guided, unguided = statistics.median(cost["guided"]), statistics.median(cost["unguided"])
    return {
        "schemas": len(SCHEMA_TASKS), "temperatures": list(TEMPERATURES),
        "validity": {"requests": validity.requests, "valid": validity.valid,
                     "cut_off": validity.cut_off, "failures": validity.failures},
        "checks": checks,
        "cost": {"concurrency": args.concurrency, "requests": args.cost_requests,
                 "max_tokens": args.cost_max_tokens, "rounds": args.rounds,
                 "guided_tokens_per_s": cost["guided"], "unguided_tokens_per_s":
                     cost["unguided"], "ratio": guided / unguided},
        "compile": compile_ms,
    }


def _report(f: dict) -> str:
    v, c, k = f["validity"], f["cost"], f["compile"]
    lines = [
        f"validity: {v['valid']}/{v['requests']} replies parse and validate "
        f"({f['schemas']} schemas x temperatures {f['temperatures']}); cut off: {v['cut_off']}",
        *(f"  FAILED {line}" for line in v["failures"]),
        *(f"{name}: {'ok' if ok else 'FAILED'}" for name, ok in f["checks"].items()),
        f"cost at c={c['concurrency']} ({c['requests']} requests x {c['rounds']} rounds, "
        f"max_tokens {c['max_tokens']}): guided "
        f"{statistics.median(c['guided_tokens_per_s']):.1f} tok/s, unguided "
        f"{statistics.median(c['unguided_tokens_per_s']):.1f} tok/s, ratio {c['ratio']:.2f}",
        f"grammar compile: first use median {k['first_median_ms']:.1f} ms, max "
        f"{k['first_max_ms']:.1f} ms; cached {k['cached_median_ms']:.3f} ms",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
