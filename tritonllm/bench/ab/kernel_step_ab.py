"""Decode steps with an older build of our kernels against this tree's, in one process.

``python kernel_step_ab.py REV`` (a git revision of this repository; or a path to an older
``cpu_kernels.cpp``): that revision's kernels, compiled with this tree's flags, swapped into
one runner for alternate steps (only the fused layers' call differs), fp32 and int8, B = 1 and 8,
256 cached tokens per row, ``THREADS`` threads (default 2). Separate processes run one after
the other see the machine's read bandwidth move step times by up to ±20 %; alternating steps
in one process does not. docs/performance.md, "CPU kernels". A revision from before the fp32
panel layout reads fp32 weights differently: fp32 is skipped for it (``linear_layers_ab.py``
compares those linear layers).
"""
import ctypes, os, statistics, subprocess, sys, tempfile, time
from pathlib import Path

import torch

tree = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(tree))
threads = int(os.environ.get("THREADS", "2"))
torch.set_num_threads(threads)
from tritonllm.bench.step_profile import decode_batch  # noqa: E402
from tritonllm.engine import EngineConfig, cpu_kernels  # noqa: E402
from tritonllm.engine.runner import ModelRunner  # noqa: E402
from tritonllm.model_source import resolve_model_dir  # noqa: E402

new = cpu_kernels.load()
work = Path(tempfile.mkdtemp())
source, old_source, built = Path(sys.argv[1]), work / "old.cpp", work / "old.so"
text = source.read_text() if source.is_file() else subprocess.run(
    ["git", "-C", str(tree), "show", f"{sys.argv[1]}:tritonllm/engine/csrc/cpu_kernels.cpp"],
    check=True, capture_output=True, text=True).stdout
if "tl_decoder_layers" not in text:  # older builds: the runner's one call per step, added
    one = "tl_decoder_layer" if "void tl_decoder_layer(" in text else "tl_decode_layer"
    text += ('extern "C" void tl_decoder_layers(const LayerC* layers, int64_t count, '
             'const StepC* step, float* x, float* const* k, float* const* v) {\n'
             f'    for (int64_t i = 0; i < count; ++i) {one}(layers + i, step, x, k[i], v[i]);\n}}\n')
old_source.write_text(text)
subprocess.run([os.environ.get("CXX", "g++"), *cpu_kernels.FLAGS, str(old_source), "-o",
                str(built)], check=True)
old = ctypes.CDLL(str(built))
old.tl_decoder_layers.argtypes = cpu_kernels._SIGNATURES["tl_decoder_layers"]
old.tl_decoder_layers.restype = None


for weights in ("fp32", "int8") if "PANEL" in text else ("int8",):
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
