"""Median decode-step time (runner.forward + arg-max) at B=1 and B=8, 256 cached tokens per row
(``THREADS`` torch threads, default 1).

``python decode_step.py TREE WEIGHTS``: imports tritonllm from TREE (so an older checkout can be
measured); WEIGHTS ``fp32``/``int8``, or ``-`` for a tree whose EngineConfig has no ``weights``.
"""
import sys, time, statistics, torch
tree, weights = sys.argv[1], sys.argv[2]
sys.path.insert(0, tree)
import os
threads = int(os.environ.get("THREADS", "1"))
torch.set_num_threads(threads)
from tritonllm.engine import EngineConfig
from tritonllm.engine.runner import ModelRunner
from tritonllm.engine.scheduler import ScheduledBatch
from tritonllm.model_source import resolve_model_dir
kw = dict(num_threads=threads, max_tokens_in_paged_kv_cache=8192)
if weights != "-": kw["weights"] = weights
runner = ModelRunner.from_hf_dir(resolve_model_dir(None), EngineConfig(**kw))
def batch(rows, context=256, size=16):
    per = -(-context // size); b = ScheduledBatch(num_decodes=rows)
    for i in range(rows):
        t = list(range(i * per, (i + 1) * per))
        b.query_lens.append(1); b.context_lens.append(context); b.block_tables.append(t)
        b.sample.append(True); b.input_ids.append(100 + i); b.positions.append(context - 1)
        b.seqs.append(None)
        b.slot_mapping.append(t[(context - 1) // size] * size + (context - 1) % size)
    return b
out = []
for rows in (1, 8):
    b = batch(rows); runner.forward(b)
    ts = []
    for _ in range(15):
        s = time.perf_counter(); runner.forward(b).argmax(-1); ts.append(time.perf_counter() - s)
    out.append(f"B={rows} {1000*statistics.median(ts):7.1f} ms")
print(tree.split('/')[-1], weights, *out, flush=True)
