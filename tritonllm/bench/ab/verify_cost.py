"""What verifying a speculative row costs: one row of k tokens (the newest token and k - 1
drafts, every position's logits, at context 300) against a one-token decode row, k = 1, 3, 5,
7, fp32 on 2 threads, median of 10 steps in each of 3 passes.

``python verify_cost.py TREE``: imports tritonllm from TREE (a checkout, so an older revision
can be measured beside this one; run the two alternately). docs/performance.md, "Speculative
decoding".
"""
import statistics, sys, time

import torch

sys.path.insert(0, sys.argv[1])
torch.set_num_threads(2)
from tritonllm.engine import EngineConfig  # noqa: E402
from tritonllm.engine.runner import ModelRunner  # noqa: E402
from tritonllm.engine.scheduler import ScheduledBatch  # noqa: E402
from tritonllm.model_source import resolve_model_dir  # noqa: E402

runner = ModelRunner.from_hf_dir(resolve_model_dir(None), EngineConfig(
    num_threads=2, max_tokens_in_paged_kv_cache=8192))


def row(k: int, context: int = 300) -> ScheduledBatch:
    positions = list(range(context - k, context))
    blocks = list(range(-(-context // runner.config.tokens_per_block)))
    return ScheduledBatch(query_lens=[k], context_lens=[context], block_tables=[blocks],
                          sample=[True], input_ids=[100 + i for i in range(k)],
                          positions=positions, slot_mapping=positions)


times: dict[int, list[float]] = {}
for _ in range(3):
    for k in (1, 3, 5, 7):
        batch = row(k)
        runner.forward(batch, all_tokens=True)
        steps = []
        for _ in range(10):
            start = time.perf_counter()
            runner.forward(batch, all_tokens=True)
            steps.append(time.perf_counter() - start)
        times.setdefault(k, []).append(statistics.median(steps))
one = statistics.median(times[1])
print(sys.argv[1], " ".join(f"k={k}: {statistics.median(t) / one:.2f}x" for k, t in times.items()),
      f"(k=1: {1000 * one:.1f} ms)")
