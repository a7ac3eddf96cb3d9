"""BlockManager: paged block bookkeeping, in tokens and blocks. No torch involved."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tritonllm.engine.kv_cache import BlockManager


def test_kv_cache_module_does_not_import_torch():
    code = "import sys, tritonllm.engine.kv_cache; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_allocate_grows_by_whole_blocks():
    blocks = BlockManager(num_blocks=8, block_size=4)
    assert blocks.num_total_tokens == 32 and blocks.num_free_tokens == 32
    blocks.allocate(0, 5)
    assert len(blocks.block_table(0)) == 2 and blocks.capacity(0) == 8
    blocks.allocate(0, 8)  # still fits: no new block
    assert len(blocks.block_table(0)) == 2
    assert blocks.append_slot(0, 8) == blocks.block_table(0)[2] * 4
    assert blocks.num_free_blocks == 5 and blocks.num_free_tokens == 20


def test_slots_follow_block_tables():
    blocks = BlockManager(num_blocks=8, block_size=4)
    blocks.allocate(0, 3)
    blocks.allocate(1, 6)
    blocks.allocate(0, 10)  # seq 0's blocks are not contiguous now
    table = blocks.block_table(0)
    assert blocks.slots(0, 0, 10) == [table[p // 4] * 4 + p % 4 for p in range(10)]
    every_slot = blocks.slots(0, 0, 12) + blocks.slots(1, 0, 8)
    assert len(set(every_slot)) == len(every_slot)  # no two sequences share a slot


def test_can_allocate_and_refusal():
    blocks = BlockManager(num_blocks=4, block_size=4)
    blocks.allocate(0, 12)
    assert blocks.can_allocate(1, 4) and not blocks.can_allocate(1, 5)
    assert blocks.can_allocate(0, 16) and not blocks.can_allocate(0, 17)
    with pytest.raises(RuntimeError, match="needs 2 blocks, 1 free"):
        blocks.allocate(1, 8)
    assert blocks.num_free_blocks == 1  # a refused allocation takes nothing


def test_free_returns_everything():
    blocks = BlockManager(num_blocks=6, block_size=2)
    blocks.allocate(0, 5)
    blocks.allocate(1, 4)
    assert blocks.free(0) == 3 and blocks.free(1) == 2 and blocks.free(7) == 0
    assert blocks.num_free_blocks == 6 and blocks.block_table(0) == []


def test_bad_sizes_are_refused():
    with pytest.raises(ValueError, match="num_blocks"):
        BlockManager(num_blocks=0, block_size=4)


# ---- KV-cache reuse --------------------------------------------------------------------------

def computed(blocks: BlockManager, seq_id: int, tokens: list[int], prefix=()) -> None:
    """Allocate ``tokens`` for a new sequence (sharing ``prefix``) and commit them as computed."""
    blocks.allocate(seq_id, len(tokens), prefix)
    blocks.commit(seq_id, tokens, len(tokens))


def test_full_blocks_of_a_common_prefix_are_shared_with_ref_counts():
    blocks = BlockManager(num_blocks=8, block_size=4)
    first = list(range(10))  # blocks [0-3] [4-7] full, [8-9] partial
    computed(blocks, 0, first)
    second = first[:8] + [50, 51, 52]
    prefix = blocks.cached_prefix(second)
    assert prefix == blocks.block_table(0)[:2]  # the partial block is never shared
    assert blocks.cached_prefix(second, limit=7) == prefix[:1]
    blocks.allocate(1, len(second), prefix)
    assert blocks.block_table(1)[:2] == prefix and blocks.block_table(1)[2] not in prefix
    assert blocks.num_free_blocks == 8 - 4  # 3 of seq 0, 1 private of seq 1
    blocks.free(0)  # the shared blocks stay: seq 1 holds them
    assert blocks.num_free_blocks == 8 - 3 and blocks.cached_prefix(second) == prefix
    blocks.free(1)
    assert blocks.num_free_blocks == 8 and blocks.num_cached_blocks == 2  # cached, evictable


def test_a_block_hash_covers_every_token_before_it():
    blocks = BlockManager(num_blocks=8, block_size=4)
    computed(blocks, 0, [1, 2, 3, 4, 5, 6, 7, 8])
    assert blocks.cached_prefix([9, 2, 3, 4, 5, 6, 7, 8]) == []  # same 2nd block, other 1st
    assert blocks.cached_prefix([5, 6, 7, 8]) == []  # same tokens at another position
    assert len(blocks.cached_prefix([1, 2, 3, 4, 5, 6, 7, 9])) == 1


def test_only_computed_full_blocks_are_registered():
    blocks = BlockManager(num_blocks=8, block_size=4)
    tokens = list(range(12))
    blocks.allocate(0, 12)
    blocks.commit(0, tokens, 5)  # one full block computed so far
    assert len(blocks.cached_prefix(tokens)) == 1
    blocks.commit(0, tokens, 12)
    assert len(blocks.cached_prefix(tokens)) == 3


def test_eviction_takes_unreferenced_cached_blocks_least_recently_used_tail_first():
    blocks = BlockManager(num_blocks=6, block_size=2)
    a, b = [1, 2, 3, 4, 5, 6], [7, 8, 9, 10]
    computed(blocks, 0, a)
    computed(blocks, 1, b)
    blocks.free(0)  # released first: least recently used
    blocks.free(1)
    assert blocks.num_free_blocks == 6 and blocks.num_evictions == 0
    blocks.allocate(2, 2)  # the plain free block goes first: nothing evicted
    assert blocks.num_evictions == 0 and blocks.num_cached_blocks == 5
    blocks.allocate(3, 2)  # then a's last block: a's head stays reachable
    assert blocks.num_evictions == 1
    assert len(blocks.cached_prefix(a)) == 2 and len(blocks.cached_prefix(b)) == 2
    reused = blocks.cached_prefix(b)
    blocks.allocate(4, 4, reused)  # b's blocks are in use now: never evicted
    blocks.allocate(5, 4)  # takes a's two remaining blocks
    assert blocks.num_evictions == 3 and blocks.cached_prefix(a) == []
    assert blocks.cached_prefix(b) == reused and blocks.num_free_blocks == 0
    assert not blocks.can_allocate(6, 1)


def test_free_capacity_counts_evictable_blocks_but_not_reused_ones():
    blocks = BlockManager(num_blocks=4, block_size=2)
    computed(blocks, 0, [1, 2, 3, 4, 5, 6])
    blocks.free(0)
    prefix = blocks.cached_prefix([1, 2, 3, 4, 5, 6, 7])
    assert len(prefix) == 3 and blocks.num_free_blocks == 4
    assert blocks.can_allocate(1, 8, prefix)  # 3 shared + 1 new
    assert not blocks.can_allocate(1, 10, prefix)  # 2 new, but only 1 block is not reused
    blocks.allocate(1, 8, prefix)
    assert blocks.num_free_blocks == 0 and blocks.num_evictions == 0


def test_the_same_prefix_computed_twice_keeps_one_cached_copy():
    blocks = BlockManager(num_blocks=8, block_size=2)
    tokens = [1, 2, 3, 4]
    blocks.allocate(0, 4)
    blocks.allocate(1, 4)  # admitted before seq 0's blocks were computed
    blocks.commit(0, tokens, 4)
    blocks.commit(1, tokens, 4)
    assert blocks.cached_prefix(tokens) == blocks.block_table(0)
    blocks.free(1)  # its duplicate blocks go back to the plain free list
    blocks.free(0)
    assert blocks.num_cached_blocks == 2 and blocks.num_free_blocks == 8
    blocks.allocate(2, 12)  # 6 blocks: the plain free ones come first
    assert blocks.num_evictions == 0


def test_reuse_off_shares_nothing():
    blocks = BlockManager(num_blocks=4, block_size=2, enable_kv_cache_reuse=False)
    computed(blocks, 0, [1, 2, 3, 4])
    assert blocks.cached_prefix([1, 2, 3, 4, 5]) == [] and blocks.num_cached_blocks == 0
    blocks.free(0)
    assert blocks.num_free_blocks == 4
