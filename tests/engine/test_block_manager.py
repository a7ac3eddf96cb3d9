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
