"""Scheduler: admission under both policies, chunked prefill, join/leave, preemption, removal.

Plain Python like the scheduler itself; ``test_no_torch_import`` proves, in a fresh interpreter,
that scheduling never imports torch.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from tritonllm.engine.config import EngineConfig
from tritonllm.engine.request import GenerationRequest, Sequence, SequenceStatus
from tritonllm.engine.scheduler import Scheduler

NEXT_TOKEN = 7  # what the fake "model" always generates


def make_scheduler(**overrides) -> Scheduler:
    fields = dict(max_batch_size=4, max_num_tokens=64, max_input_len=32, max_seq_len=64,
                  max_tokens_in_paged_kv_cache=64, tokens_per_block=4, num_threads=1)
    fields.update(overrides)
    return Scheduler(EngineConfig(**fields))


def make_seq(seq_id: int, prompt_len: int, max_new_tokens: int) -> Sequence:
    request = GenerationRequest(f"r{seq_id}", list(range(10, 10 + prompt_len)), max_new_tokens)
    return Sequence(seq_id, request, arrival_time_ns=0)


def step(scheduler: Scheduler):
    """One scheduled step with a fake model: each sampled row gets NEXT_TOKEN; finished
    sequences leave. Returns the batch (or None)."""
    batch = scheduler.schedule()
    if batch is None:
        return None
    scheduler.commit(batch)  # the "forward" wrote the batch's K/V
    for seq, sample in zip(batch.seqs, batch.sample):
        if sample:
            seq.append_token(NEXT_TOKEN, 0.0, 0)
            if seq.num_generated >= seq.request.max_new_tokens:
                scheduler.remove(seq)
    return batch


def run_to_end(scheduler: Scheduler, limit: int = 500) -> list:
    batches = []
    while scheduler.has_work():
        batches.append(step(scheduler))
        assert len(batches) < limit, "scheduler made no progress"
    return batches


def test_no_torch_import():
    code = textwrap.dedent("""
        import sys
        import tritonllm.engine
        from tritonllm.engine.config import EngineConfig
        from tritonllm.engine.kv_cache import BlockManager
        from tritonllm.engine.request import GenerationRequest, Sequence
        from tritonllm.engine.scheduler import Scheduler
        s = Scheduler(EngineConfig(max_tokens_in_paged_kv_cache=64, tokens_per_block=4,
                      max_seq_len=64,
                                   max_input_len=32, num_threads=1))
        s.add(Sequence(0, GenerationRequest("a", [1, 2, 3], 4), 0))
        batch = s.schedule()
        assert batch.num_tokens == 3 and BlockManager(4, 4).num_free_blocks == 4
        print("torch" in sys.modules)
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_batch_lists_are_consistent():
    scheduler = make_scheduler()
    seq = make_seq(0, prompt_len=6, max_new_tokens=3)
    scheduler.add(seq)
    batch = scheduler.schedule()
    table = scheduler.block_manager.block_table(0)
    assert batch.seq_ids == [0] and batch.query_lens == [6] and batch.context_lens == [6]
    assert batch.positions == list(range(6)) and batch.input_ids == seq.token_ids
    assert batch.slot_mapping == [table[p // 4] * 4 + p % 4 for p in range(6)]
    assert batch.sample == [True] and batch.num_decodes == 0
    seq.append_token(NEXT_TOKEN, 0.0, 0)
    batch = scheduler.schedule()
    assert batch.input_ids == [NEXT_TOKEN] and batch.positions == [6]
    assert batch.context_lens == [7] and batch.num_decodes == 1


def test_guaranteed_no_evict_reserves_prompt_plus_max_new_tokens():
    scheduler = make_scheduler(max_tokens_in_paged_kv_cache=32)  # 8 blocks of 4
    seqs = [make_seq(i, prompt_len=4, max_new_tokens=12) for i in range(3)]  # 4 blocks each
    for seq in seqs:
        scheduler.add(seq)
    step(scheduler)
    assert [s.status for s in seqs] == [SequenceStatus.RUNNING] * 2 + [SequenceStatus.WAITING]
    assert scheduler.block_manager.num_free_blocks == 0
    batches = run_to_end(scheduler)
    assert scheduler.num_preempted == 0
    assert all(seq.num_generated == 12 for seq in seqs)
    # the third joins the step after the first two leave
    joined = next(i for i, b in enumerate(batches) if 2 in b.seq_ids)
    assert 0 in batches[joined - 1].seq_ids and 0 not in batches[joined].seq_ids


def test_max_utilization_admits_on_current_need():
    scheduler = make_scheduler(max_tokens_in_paged_kv_cache=32,
                               batch_scheduler_policy="max_utilization")
    seqs = [make_seq(i, prompt_len=4, max_new_tokens=12) for i in range(3)]
    for seq in seqs:
        scheduler.add(seq)
    step(scheduler)
    assert all(seq.status is SequenceStatus.RUNNING for seq in seqs)
    assert scheduler.block_manager.num_free_blocks == 8 - 3


def test_max_utilization_preempts_newest_and_recomputes():
    scheduler = make_scheduler(max_tokens_in_paged_kv_cache=32,
                               batch_scheduler_policy="max_utilization",
                               enable_kv_cache_reuse=False)
    seqs = [make_seq(i, prompt_len=4, max_new_tokens=12) for i in range(3)]
    for seq in seqs:
        scheduler.add(seq)
    batches = []
    while scheduler.num_preempted == 0:
        batches.append(step(scheduler))
    victim = seqs[2]  # the most recently admitted
    assert victim.status is SequenceStatus.WAITING and victim.num_computed_tokens == 0
    assert scheduler.block_manager.block_table(victim.seq_id) == []
    generated_before = victim.num_generated
    assert generated_before > 0
    while victim.status is not SequenceStatus.RUNNING:
        batches.append(step(scheduler))
    resumed = batches[-1]
    row = resumed.seq_ids.index(victim.seq_id)
    # readmitted with a prefill of its prompt and the tokens it had generated
    n = resumed.query_lens[row]
    offset = sum(resumed.query_lens[:row])
    assert n == 4 + generated_before and resumed.sample[row]
    assert resumed.positions[offset:offset + n] == list(range(n))
    run_to_end(scheduler)
    assert all(seq.num_generated == 12 for seq in seqs)
    assert seqs[2].token_ids[4:] == [NEXT_TOKEN] * 12
    assert scheduler.block_manager.num_free_blocks == 8


def test_chunked_prefill_keeps_decodes_running():
    scheduler = make_scheduler(max_num_tokens=8)
    short = make_seq(0, prompt_len=3, max_new_tokens=20)
    scheduler.add(short)
    step(scheduler)
    long = make_seq(1, prompt_len=30, max_new_tokens=4)
    scheduler.add(long)
    chunks = []
    while long.num_generated == 0:
        batch = step(scheduler)
        assert batch.num_tokens <= 8
        assert batch.seq_ids[0] == short.seq_id and batch.query_lens[0] == 1  # never stalls
        chunks.append(batch.query_lens[batch.seq_ids.index(long.seq_id)])
    assert sum(chunks) == 30 and chunks[:-1] == [7] * (len(chunks) - 1)


def test_without_chunking_a_prompt_waits_to_run_whole():
    scheduler = make_scheduler(max_num_tokens=30, max_batch_size=4, max_input_len=30,
                               enable_chunked_context=False)
    scheduler.add(make_seq(0, prompt_len=3, max_new_tokens=10))
    step(scheduler)
    scheduler.add(make_seq(1, prompt_len=30, max_new_tokens=2))  # needs 31 with the decode
    batch = step(scheduler)
    assert batch.seq_ids == [0]
    scheduler.remove(scheduler.running[0])
    batch = step(scheduler)
    assert batch.seq_ids == [1] and batch.query_lens == [30]


def test_max_batch_size_limits_running():
    scheduler = make_scheduler(max_batch_size=2, max_tokens_in_paged_kv_cache=256)
    for i in range(5):
        scheduler.add(make_seq(i, prompt_len=2, max_new_tokens=3 + i))
    for batch in run_to_end(scheduler):
        assert batch.num_rows <= 2 and len(scheduler.running) <= 2


def test_requests_join_and_leave_every_step():
    scheduler = make_scheduler(max_batch_size=2, max_tokens_in_paged_kv_cache=256)
    lengths = {0: 2, 1: 5, 2: 3}
    for i, n in lengths.items():
        scheduler.add(make_seq(i, prompt_len=2, max_new_tokens=n))
    batches = run_to_end(scheduler)
    members = [set(b.seq_ids) for b in batches]
    assert members[0] == {0, 1} and members[1] == {0, 1}
    # seq 0 finished in step 1; seq 2 is admitted in step 2 while seq 1 keeps decoding
    assert members[2] == {1, 2}
    assert batches[2].query_lens[batches[2].seq_ids.index(1)] == 1


def test_remove_frees_blocks_to_full_value():
    scheduler = make_scheduler(max_tokens_in_paged_kv_cache=32,
                               batch_scheduler_policy="max_utilization")
    seqs = [make_seq(i, prompt_len=5, max_new_tokens=10) for i in range(5)]
    for seq in seqs:
        scheduler.add(seq)
    for _ in range(3):
        step(scheduler)
    blocks = scheduler.block_manager
    assert blocks.num_free_tokens < blocks.num_total_tokens
    for seq in seqs:  # running and waiting alike
        if seq.status is not SequenceStatus.FINISHED:
            scheduler.remove(seq)
    assert blocks.num_free_tokens == blocks.num_total_tokens == 32
    assert not scheduler.has_work() and scheduler.schedule() is None


@pytest.mark.parametrize("policy", ["guaranteed_no_evict", "max_utilization"])
def test_capacity_accounting(policy):
    scheduler = make_scheduler(max_tokens_in_paged_kv_cache=48, batch_scheduler_policy=policy)
    for i in range(4):
        scheduler.add(make_seq(i, prompt_len=3 + i, max_new_tokens=6 + 2 * i))
    blocks = scheduler.block_manager
    while scheduler.has_work():
        step(scheduler)
        held = {b for seq in scheduler.running for b in blocks.block_table(seq.seq_id)}
        assert blocks.num_free_blocks + len(held) == blocks.num_blocks
        for seq in scheduler.running:  # every computed token has a slot
            assert blocks.capacity(seq.seq_id) >= seq.num_computed_tokens
    assert blocks.num_free_blocks == blocks.num_blocks


# ---- KV-cache reuse --------------------------------------------------------------------------

def seq_with(seq_id: int, prompt: list[int], max_new_tokens: int) -> Sequence:
    return Sequence(seq_id, GenerationRequest(f"r{seq_id}", prompt, max_new_tokens), 0)


def first_row(batch, seq):
    """(query_len, positions) of ``seq``'s row in ``batch``."""
    row = batch.seq_ids.index(seq.seq_id)
    offset = sum(batch.query_lens[:row])
    n = batch.query_lens[row]
    return n, batch.positions[offset:offset + n]


def test_admission_skips_the_cached_prefix():
    scheduler = make_scheduler()  # blocks of 4
    shared = list(range(100, 110))  # two full blocks + 2 tokens
    first = seq_with(0, shared + [1, 2], 3)
    scheduler.add(first)
    run_to_end(scheduler)
    second = seq_with(1, shared + [3, 4, 5], 3)
    scheduler.add(second)
    batch = step(scheduler)
    n, positions = first_row(batch, second)
    assert (n, positions[0]) == (13 - 8, 8) and batch.context_lens == [13]
    table = scheduler.block_manager.block_table(1)
    assert batch.block_tables[0] == table and second.num_reused_blocks == 2
    assert (scheduler.prefix_cache_queries, scheduler.prefix_cache_hits) == (12 + 13, 8)
    run_to_end(scheduler)
    assert scheduler.block_manager.num_free_blocks == scheduler.block_manager.num_blocks


def test_a_fully_cached_prompt_still_computes_its_last_token():
    scheduler = make_scheduler()
    prompt = list(range(100, 108))  # exactly two blocks
    scheduler.add(seq_with(0, prompt, 2))
    run_to_end(scheduler)
    again = seq_with(1, prompt, 2)
    scheduler.add(again)
    batch = step(scheduler)
    # one block reused; the last block is recomputed so that a token is sampled
    assert first_row(batch, again) == (4, [4, 5, 6, 7]) and batch.sample == [True]


def test_concurrent_requests_share_blocks_and_free_them_all():
    scheduler = make_scheduler(max_tokens_in_paged_kv_cache=48)  # 12 blocks
    shared = list(range(100, 112))  # three full blocks
    scheduler.add(seq_with(0, shared + [1], 6))
    step(scheduler)  # computed and committed: the next ones reuse it
    others = [seq_with(i, shared + [i], 6) for i in range(1, 4)]
    for seq in others:
        scheduler.add(seq)
    batch = step(scheduler)
    assert [first_row(batch, seq)[0] for seq in others] == [1, 1, 1]
    blocks = scheduler.block_manager
    held = {b for seq in scheduler.running for b in blocks.block_table(seq.seq_id)}
    assert len(held) == 3 + 4 * 2  # shared prefix once, 2 private blocks each (13+6 tokens)
    assert blocks.num_free_blocks + len(held) == blocks.num_blocks
    run_to_end(scheduler)
    assert blocks.num_free_blocks == blocks.num_blocks


def test_guaranteed_no_evict_counts_evictable_cached_blocks_as_free():
    scheduler = make_scheduler(max_tokens_in_paged_kv_cache=32)  # 8 blocks of 4
    scheduler.add(seq_with(0, list(range(100, 116)), 8))  # 6 blocks reserved
    run_to_end(scheduler)
    blocks = scheduler.block_manager
    assert blocks.num_cached_blocks == 5 and blocks.num_free_blocks == 8
    other = seq_with(1, list(range(200, 216)), 16)  # needs all 8 blocks: evicts the cache
    scheduler.add(other)
    step(scheduler)
    assert other.status is SequenceStatus.RUNNING and blocks.num_evictions == 5
    run_to_end(scheduler)
    assert other.num_generated == 16 and blocks.num_free_blocks == 8


def test_a_preempted_sequence_resumes_from_its_own_cached_blocks():
    scheduler = make_scheduler(max_tokens_in_paged_kv_cache=48,
                               batch_scheduler_policy="max_utilization")
    grower = seq_with(0, [5, 6], 28)  # grows to 30 tokens: 8 of the 12 blocks
    victim = seq_with(1, list(range(100, 116)), 8)  # 4 full prompt blocks
    scheduler.add(grower)
    while grower.num_tokens < 20:
        step(scheduler)
    scheduler.add(victim)
    batches = []
    while scheduler.num_preempted == 0:
        batches.append(step(scheduler))
    held_before = victim.num_tokens
    assert victim.status is SequenceStatus.WAITING and held_before > 20
    while victim.status is not SequenceStatus.RUNNING:
        batches.append(step(scheduler))
    # the grower evicted the victim's released blocks tail first; its prompt blocks survived
    # and only the rest is recomputed
    assert scheduler.block_manager.num_evictions > 0 and victim.num_reused_blocks == 4
    assert first_row(batches[-1], victim) == (held_before - 16, list(range(16, held_before)))
    run_to_end(scheduler)
    assert victim.token_ids[16:] == [NEXT_TOKEN] * 8 and grower.num_generated == 28
    assert scheduler.block_manager.num_free_blocks == 12
