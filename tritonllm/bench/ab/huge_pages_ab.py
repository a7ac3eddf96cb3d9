"""Decode steps with the weights and KV cache in huge pages against ordinary allocations, in
one process.

``python huge_pages_ab.py [WEIGHTS ...]`` (default ``int8 fp32``): two runners over the same
checkpoint, one with ``ModelRunner.huge_pages`` off, called for alternate steps (20 each),
B = 1 and 8, 256 cached tokens per row, ``THREADS`` threads (default 2); prints the median
step times, their ratio, how much of the packed runner's memory the kernel backed with huge
pages, and whether both runners' logits are equal. docs/performance.md, "CPU kernels".
"""
import os, statistics, sys, time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
threads = int(os.environ.get("THREADS", "2"))
torch.set_num_threads(threads)
from tritonllm.bench.step_profile import decode_batch  # noqa: E402
from tritonllm.engine import EngineConfig, huge_pages  # noqa: E402
from tritonllm.engine.runner import ModelRunner  # noqa: E402
from tritonllm.model_source import resolve_model_dir  # noqa: E402


print(f"transparent huge pages: {huge_pages.thp_mode()}")
for weights in sys.argv[1:] or ["int8", "fp32"]:
    runners = {}
    for huge in (False, True):
        ModelRunner.huge_pages = huge
        runners[huge] = ModelRunner.from_hf_dir(resolve_model_dir(None), EngineConfig(
            num_threads=threads, max_tokens_in_paged_kv_cache=8192, weights=weights))
    granted = [huge_pages.huge_bytes(t) or 0 for t in (runners[True].final_norm,
                                                       runners[True].kv_cache)]
    print(f"{weights}: weights + KV cache in huge pages: {granted[0] >> 20} + "
          f"{granted[1] >> 20} MiB")
    for rows in (1, 8):
        step, times = decode_batch(runners[True], rows, 256), {False: [], True: []}
        for runner in runners.values():
            runner.forward(step)
        for i in range(40):  # alternate which goes first
            for huge in ((False, True) if i % 2 else (True, False)):
                start = time.perf_counter()
                runners[huge].forward(step).argmax(-1)
                times[huge].append(time.perf_counter() - start)
        small, huge = (1000 * statistics.median(times[k]) for k in (False, True))
        print(f"{weights} B={rows}: 4 KiB pages {small:.1f} ms, huge pages {huge:.1f} ms "
              f"({small / huge:.2f}x)", flush=True)
    logits = [runners[k].forward(decode_batch(runners[k], 1, 256)) for k in (False, True)]
    print(f"{weights}: same logits: {torch.equal(*logits)}")
    del runners
