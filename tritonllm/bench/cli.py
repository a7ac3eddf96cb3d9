"""``tritonllm bench ...``: benchmark commands (``engine``: the in-process engine benchmark)."""

from __future__ import annotations


def register(subparsers) -> None:
    bench = subparsers.add_parser("bench", help="benchmarks that print figures")
    targets = bench.add_subparsers(metavar="TARGET")
    engine = targets.add_parser(
        "engine", help="the in-process engine vs transformers on the mixed workload")
    from tritonllm.bench.engine_bench import add_arguments

    add_arguments(engine)
    engine.set_defaults(handler=_engine)


def _engine(args) -> int:
    from tritonllm.bench.engine_bench import run

    return run(args)
