"""Decode steps with an older build of our kernels against this tree's, in one process.

``python kernel_step_ab.py REV`` (a git revision of this repository; or a path to an older
``cpu_kernels.cpp``): that revision's kernels, compiled with this tree's flags, swapped into
one runner for alternate steps (only the fused layers' call differs), fp32 and int8, B = 1 and 8,
256 cached tokens per row, ``THREADS`` threads (default 2). Separate processes run one after
the other see the machine's read bandwidth move step times by up to ±20 %; alternating steps
in one process does not. docs/performance.md, "CPU kernels". A revision from before a weight
type's panel layout reads those weights differently: that type is skipped for it
(``linear_layers_ab.py`` compares those linear layers).
"""
import os, statistics, sys, time
from pathlib import Path

import torch

tree = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(tree))
threads = int(os.environ.get("THREADS", "2"))
torch.set_num_threads(threads)
from tritonllm.bench.ab.older_kernels import compile_library, in_panels, source_of  # noqa: E402
from tritonllm.bench.step_profile import decode_batch  # noqa: E402
from tritonllm.engine import EngineConfig, cpu_kernels  # noqa: E402
from tritonllm.engine.runner import ModelRunner  # noqa: E402
from tritonllm.model_source import resolve_model_dir  # noqa: E402

new = cpu_kernels.load()
text = source_of(sys.argv[1], tree)
if "tl_decoder_layers" not in text:  # older builds: the runner's one call per step, added
    one = "tl_decoder_layer" if "void tl_decoder_layer(" in text else "tl_decode_layer"
    text += ('extern "C" void tl_decoder_layers(const LayerC* layers, int64_t count, '
             'const StepC* step, float* x, float* const* k, float* const* v) {\n'
             f'    for (int64_t i = 0; i < count; ++i) {one}(layers + i, step, x, k[i], v[i]);\n}}\n')
old = compile_library(text)

for weights in [w for w in ("fp32", "int8") if in_panels(text, w)]:
    runner = ModelRunner.from_hf_dir(resolve_model_dir(None), EngineConfig(
        num_threads=threads, max_tokens_in_paged_kv_cache=8192, weights=weights))
    for rows in (1, 8):
        step, times = decode_batch(runner, rows, 256), {"old": [], "new": []}
        for _ in range(21):
            for name, lib in (("old", old), ("new", new)):
                runner.kernels = lib
                start = time.perf_counter()
                runner.forward(step)
                times[name].append(time.perf_counter() - start)
        o, n = (1000 * statistics.median(times[k][1:]) for k in ("old", "new"))
        print(f"{weights} B={rows}: old {o:.1f} ms, new {n:.1f} ms ({o / n:.2f}x)", flush=True)
