"""``tritonllm bench ...``: benchmark commands (``engine``: the in-process engine;
``serving``: through a real tritonserver; ``ensemble``: the ensemble's capacity, synthetic
engine; ``prefix``: KV-cache reuse on vs off in the engine; ``speculative``: n-gram
speculation off vs on in the engine; ``guided``: structured outputs through the OpenAI API)."""

from __future__ import annotations


def register(subparsers) -> None:
    bench = subparsers.add_parser("bench", help="benchmarks that print figures")
    targets = bench.add_subparsers(metavar="TARGET")
    engine = targets.add_parser(
        "engine", help="the in-process engine vs transformers on the mixed workload")
    from tritonllm.bench.engine_bench import add_arguments

    add_arguments(engine)
    engine.set_defaults(handler=_engine)
    serving = targets.add_parser(
        "serving", help="a real tritonserver vs transformers on the mixed workload")
    from tritonllm.bench import serving_bench

    serving_bench.add_arguments(serving)
    serving.set_defaults(handler=serving_bench.run)
    ensemble = targets.add_parser(
        "ensemble", help="streamed tokens/s through the real pre/postprocessing and ensemble, "
                         "with a SYNTHETIC token source in place of the engine")
    from tritonllm.bench import ensemble_bench

    ensemble_bench.add_arguments(ensemble)
    ensemble.set_defaults(handler=ensemble_bench.run)
    prefix = targets.add_parser(
        "prefix", help="KV-cache reuse on vs off in the engine, on the shared-prefix workload")
    from tritonllm.bench import prefix_bench

    prefix_bench.add_arguments(prefix)
    prefix.set_defaults(handler=prefix_bench.run)
    speculative = targets.add_parser(
        "speculative", help="n-gram speculative decoding off vs on in the engine, on the "
                            "input-grounded and mixed workloads")
    from tritonllm.bench import spec_bench

    spec_bench.add_arguments(speculative)
    speculative.set_defaults(handler=spec_bench.run)
    guided = targets.add_parser(
        "guided", help="structured outputs through the OpenAI API: validity, cost vs "
                       "unguided, grammar compile time")
    from tritonllm.bench import guided_bench

    guided_bench.add_arguments(guided)
    guided.set_defaults(handler=guided_bench.run)


def _engine(args) -> int:
    from tritonllm.bench.engine_bench import run

    return run(args)
