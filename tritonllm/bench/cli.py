"""``tritonllm bench ...``: benchmark commands (``engine``: the in-process engine;
``serving``: through a real tritonserver; ``ensemble``: the ensemble's capacity, synthetic
engine; ``prefix``: KV-cache reuse on vs off in the engine; ``speculative``: n-gram
speculation off vs on in the engine; ``guided``: structured outputs through the OpenAI API;
``roofline``: the machine's limits and the engine's fraction of them)."""

from __future__ import annotations

import importlib

# target -> (module in tritonllm.bench with add_arguments(parser) and run(args), help)
TARGETS = {
    "engine": ("engine_bench", "the in-process engine vs transformers on the mixed workload"),
    "serving": ("serving_bench", "a real tritonserver vs transformers on the mixed workload"),
    "ensemble": ("ensemble_bench", "streamed tokens/s through the real pre/postprocessing and "
                                   "ensemble, with a SYNTHETIC token source in place of the "
                                   "engine"),
    "prefix": ("prefix_bench", "KV-cache reuse on vs off in the engine, on the shared-prefix "
                               "workload"),
    "speculative": ("spec_bench", "n-gram speculative decoding off vs on in the engine, on the "
                                  "input-grounded and mixed workloads"),
    "guided": ("guided_bench", "structured outputs through the OpenAI API: validity, cost vs "
                               "unguided, grammar compile time"),
    "roofline": ("roofline", "this machine's read rate and peak FLOP/s per thread count, and the "
                             "engine's decode and prefill steps as a fraction of those limits"),
}


def register(subparsers) -> None:
    bench = subparsers.add_parser("bench", help="benchmarks that print figures")
    targets = bench.add_subparsers(metavar="TARGET")
    for name, (module_name, help_text) in TARGETS.items():
        module = importlib.import_module(f"tritonllm.bench.{module_name}")
        parser = targets.add_parser(name, help=help_text)
        module.add_arguments(parser)
        parser.set_defaults(handler=module.run)
