"""SmolLM2's 121 linear layers (random weights of its shapes, in huge pages) through an older
build of our kernels and this tree's, alternating in one process.

``python linear_layers_ab.py REV [fp32|int8|int4]``: REV's ``cpu_kernels.cpp`` (a git revision of
this repository, or a path), compiled with this tree's flags for the build this CPU runs
(``TRITONLLM_CPU_ISA`` picks one). Builds from before a weight type's panel layout get plain
``[N, K]`` weights; later ones the panels. Prints the median time of all 121 layers at 1, 2, 4,
8 and 512 rows of x on ``THREADS`` threads (default 2). docs/cpu-engine.md, "CPU kernels".
"""
import os, statistics, sys, time
from pathlib import Path

import torch

tree = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(tree))
threads = int(os.environ.get("THREADS", "2"))
torch.set_num_threads(threads)
from tritonllm.bench.ab.older_kernels import compile_library, in_panels, source_of  # noqa: E402
from tritonllm.engine import cpu_kernels, huge_pages, kernel_build  # noqa: E402
from tritonllm.engine.linear import (quantize_int4, quantize_per_channel,  # noqa: E402
                                     unpack_int4)

new = kernel_build.load()
text = source_of(sys.argv[1], tree)
old = compile_library(text)
weights = sys.argv[2] if len(sys.argv) > 2 else "fp32"
old_panels = in_panels(text, weights)

# SmolLM2-135M: q/k/v, o, gate/up, down per layer (30), then lm_head
shapes = [(960, 576), (576, 576), (3072, 576), (576, 1536)] * 30 + [(49152, 576)]
generator = torch.Generator().manual_seed(0)
dense = [torch.randn(n, k, generator=generator) * 0.05 for n, k in shapes]
# per layer: (weight, scale, block scale), plain and in panels
if weights == "fp32":
    plain = [(w, None, None) for w in dense]
    panels = [(cpu_kernels.pack_panels(w), None, None) for w in dense]
elif weights == "int8":
    plain = [(q, s, None) for q, s in map(quantize_per_channel, dense)]
    panels = [(cpu_kernels.pack_panels(q), s, None) for q, s, _ in plain]
else:
    plain = [(q, s, b) for q, b, s in map(quantize_int4, dense)]
    panels = [(w, s, b) for w, b, s in (
        cpu_kernels.pack_int4_panels(unpack_int4(q), b, s) for q, s, b in plain)]


def in_huge_pages(layers):
    tensors = [t for layer in layers for t in layer if t is not None]
    copies = iter(huge_pages.pack(tensors))
    return [tuple(None if t is None else next(copies) for t in layer) for layer in layers]


plain, panels = in_huge_pages(plain), in_huge_pages(panels)


def run(lib, layers, rows):
    x = {k: torch.randn(rows, k) for k in (576, 1536)}
    for (n, k), (w, scale, block_scale) in zip(shapes, layers):
        cpu_kernels.linear(lib, x[k], w, None, scale, block_scale, out_features=n)


print(f"{weights}, {kernel_build.chosen_isa().name}, {threads} threads; {sys.argv[1]}: "
      f"{'panels' if old_panels else 'plain weights'}")
for rows in (1, 2, 4, 8, 512):
    times = {"old": [], "new": []}
    for _ in range(10 if rows < 512 else 2):
        for name, lib, layers in (("old", old, panels if old_panels else plain),
                                  ("new", new, panels)):
            start = time.perf_counter()
            run(lib, layers, rows)
            times[name].append(time.perf_counter() - start)
    o, n = (1000 * statistics.median(times[k]) for k in ("old", "new"))
    print(f"{rows} rows: old {o:.1f} ms, new {n:.1f} ms ({o / n:.2f}x)", flush=True)
