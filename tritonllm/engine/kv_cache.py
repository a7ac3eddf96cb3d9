"""Paged KV-cache bookkeeping: which cache blocks belong to which sequence. No torch.

The runner owns one preallocated K/V tensor of ``num_blocks`` blocks of ``block_size`` token
slots each; this module only hands out block ids. Why paged blocks rather than one
``max_seq_len`` slot per request:

- no waste: a request holds ``ceil(tokens / block_size)`` blocks, not a whole ``max_seq_len``
  row, so a cache sized for 8 long requests serves many more short ones at once;
- capacity is counted in tokens, which is what ``kv_cache_tokens`` and the admission policies
  (``guaranteed_no_evict`` reserves prompt + max_new_tokens, ``max_utilization`` grows on
  demand) are expressed in;
- blocks can later be shared between requests with a common prefix (ref counts + block
  hashes) without changing the runner.

Slot of token ``pos`` of a sequence: ``table[pos // block_size] * block_size + pos % block_size``.
"""

from __future__ import annotations


class BlockManager:
    """Free list of block ids and one block table per sequence id."""

    def __init__(self, num_blocks: int, block_size: int) -> None:
        if num_blocks < 1 or block_size < 1:
            raise ValueError(f"num_blocks and block_size: must be >= 1, got {num_blocks}, "
                             f"{block_size}")
        self.num_blocks = num_blocks
        self.block_size = block_size
        self._free: list[int] = list(range(num_blocks - 1, -1, -1))  # pop() hands out 0 first
        self._tables: dict[int, list[int]] = {}

    @property
    def num_free_blocks(self) -> int:
        return len(self._free)

    @property
    def num_free_tokens(self) -> int:
        return len(self._free) * self.block_size

    @property
    def num_total_tokens(self) -> int:
        return self.num_blocks * self.block_size

    def blocks_for(self, num_tokens: int) -> int:
        """Blocks needed to hold ``num_tokens`` tokens."""
        return -(-num_tokens // self.block_size)

    def block_table(self, seq_id: int) -> list[int]:
        """The sequence's block ids in position order (empty when it holds none)."""
        return self._tables.get(seq_id, [])

    def capacity(self, seq_id: int) -> int:
        """Tokens the sequence's blocks can hold now."""
        return len(self.block_table(seq_id)) * self.block_size

    def blocks_missing(self, seq_id: int, num_tokens: int) -> int:
        """Extra blocks the sequence needs to hold ``num_tokens`` tokens (0 when it has them)."""
        return max(0, self.blocks_for(num_tokens) - len(self.block_table(seq_id)))

    def can_allocate(self, seq_id: int, num_tokens: int) -> bool:
        """True when the sequence's table can grow to hold ``num_tokens`` tokens."""
        return self.blocks_missing(seq_id, num_tokens) <= len(self._free)

    def allocate(self, seq_id: int, num_tokens: int) -> None:
        """Grow the sequence's table (creating it if new) to hold ``num_tokens`` tokens."""
        missing = self.blocks_missing(seq_id, num_tokens)
        if missing > len(self._free):
            raise RuntimeError(f"KV cache: sequence {seq_id} needs {missing} blocks, "
                               f"{len(self._free)} free")
        table = self._tables.setdefault(seq_id, [])
        table.extend(self._free.pop() for _ in range(missing))

    def append_slot(self, seq_id: int, position: int) -> int:
        """Make room for token ``position`` (one more block if needed); return its slot."""
        self.allocate(seq_id, position + 1)
        return self.slot(seq_id, position)

    def slot(self, seq_id: int, position: int) -> int:
        """Flat cache slot of the sequence's token at ``position`` (must be allocated)."""
        block = self._tables[seq_id][position // self.block_size]
        return block * self.block_size + position % self.block_size

    def slots(self, seq_id: int, start: int, stop: int) -> list[int]:
        """Flat slots of positions ``start .. stop-1`` (must be allocated)."""
        table, size = self._tables[seq_id], self.block_size
        return [table[p // size] * size + p % size for p in range(start, stop)]

    def free(self, seq_id: int) -> int:
        """Return all of the sequence's blocks to the free list; the number freed."""
        table = self._tables.pop(seq_id, [])
        self._free.extend(reversed(table))
        return len(table)
