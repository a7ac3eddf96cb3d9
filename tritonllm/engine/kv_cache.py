"""Paged KV-cache bookkeeping: which cache blocks belong to which sequence, and which full
blocks hold a known token prefix that other sequences may share. No torch.

The runner owns one preallocated K/V tensor of ``num_blocks`` blocks of ``block_size`` token
slots each; this module only hands out block ids. Why paged blocks rather than one
``max_seq_len`` slot per request:

- no waste: a request holds ``ceil(tokens / block_size)`` blocks, not a whole ``max_seq_len``
  row, so a cache sized for 8 long requests serves many more short ones at once;
- capacity is counted in tokens, which is what ``kv_cache_tokens`` and the admission policies
  (``guaranteed_no_evict`` reserves prompt + max_new_tokens, ``max_utilization`` grows on
  demand) are expressed in;
- full blocks can be shared between requests with a common prefix without changing the runner.

Prefix reuse (``enable_kv_cache_reuse``), TensorRT-LLM's KV-cache block reuse on the CPU:

- a full block is identified by a hash chained over blocks: the hash of block ``i`` covers the
  hash of block ``i - 1`` and the block's own token ids, so it stands for every token from
  position 0 to the block's end (sha256: equal hashes mean equal prefixes);
- :meth:`BlockManager.commit` registers a sequence's full blocks once their K/V are computed;
  :meth:`BlockManager.cached_prefix` finds the longest run of registered blocks that starts a
  token list; :meth:`BlockManager.allocate` with ``prefix`` puts those blocks at the head of a
  new sequence's table (reference count + 1) so it computes only the rest;
- reference counts: a block is held while any sequence's table holds it. A released block
  whose hash is registered stays cached but *evictable*: it counts as free capacity and is
  handed out again, least recently used first, only when no plain free block is left (its hash
  is dropped then: an eviction). A block in use is never evicted;
- blocks are released tail first, so a sequence's last blocks are evicted before its first
  ones (a cached block is only reachable through its whole chain of predecessors).

A sequence only ever writes K/V into blocks past its shared prefix: shared blocks are full and
read-only by construction.

Slot of token ``pos`` of a sequence: ``table[pos // block_size] * block_size + pos % block_size``.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Sequence


def chain_hash(parent: bytes, token_ids: Sequence[int]) -> bytes:
    """Hash of a full block: its predecessor's hash and its own token ids."""
    digest = hashlib.sha256(parent)
    digest.update(",".join(map(str, token_ids)).encode())
    return digest.digest()


class BlockManager:
    """Block ids: per-sequence tables, reference counts, plain free list and cached blocks."""

    def __init__(self, num_blocks: int, block_size: int, enable_kv_cache_reuse: bool = True
                 ) -> None:
        if num_blocks < 1 or block_size < 1:
            raise ValueError(f"num_blocks and block_size: must be >= 1, got {num_blocks}, "
                             f"{block_size}")
        self.num_blocks = num_blocks
        self.block_size = block_size
        self.enable_kv_cache_reuse = enable_kv_cache_reuse
        self._free: list[int] = list(range(num_blocks - 1, -1, -1))  # pop() hands out 0 first
        self._tables: dict[int, list[int]] = {}
        self._refs = [0] * num_blocks
        self._hash: list[bytes | None] = [None] * num_blocks  # registered blocks only
        self._cached: dict[bytes, int] = {}  # hash -> block id
        self._evictable: OrderedDict[int, None] = OrderedDict()  # refs 0, cached; LRU first
        # seq id -> (leading blocks already hashed, the chain hash of the last of them)
        self._chain: dict[int, tuple[int, bytes]] = {}
        self.num_evictions = 0

    # ---- capacity ------------------------------------------------------------------------

    @property
    def num_free_blocks(self) -> int:
        """Blocks a new allocation can take: plain free ones plus evictable cached ones."""
        return len(self._free) + len(self._evictable)

    @property
    def num_free_tokens(self) -> int:
        return self.num_free_blocks * self.block_size

    @property
    def num_total_tokens(self) -> int:
        return self.num_blocks * self.block_size

    @property
    def num_cached_blocks(self) -> int:
        """Blocks whose prefix hash is registered (in use or evictable)."""
        return len(self._cached)

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

    def can_allocate(self, seq_id: int, num_tokens: int, prefix: Sequence[int] = ()) -> bool:
        """True when the sequence's table can grow to hold ``num_tokens`` tokens (a new
        sequence: with the cached ``prefix`` blocks at its head)."""
        reused_evictable = sum(1 for block in prefix if block in self._evictable)
        missing = self.blocks_missing(seq_id, num_tokens) - len(prefix)
        return missing <= self.num_free_blocks - reused_evictable

    # ---- allocation ----------------------------------------------------------------------

    def allocate(self, seq_id: int, num_tokens: int, prefix: Sequence[int] = ()) -> None:
        """Grow the sequence's table (creating it if new) to hold ``num_tokens`` tokens.

        ``prefix``: cached blocks (from :meth:`cached_prefix`) that start a new sequence's
        table; they are shared, not copied."""
        if prefix and seq_id in self._tables:
            raise RuntimeError(f"KV cache: sequence {seq_id} already holds blocks; a cached "
                               "prefix can only start a new table")
        if not self.can_allocate(seq_id, num_tokens, prefix):
            missing = self.blocks_missing(seq_id, num_tokens) - len(prefix)
            raise RuntimeError(f"KV cache: sequence {seq_id} needs {missing} blocks, "
                               f"{self.num_free_blocks} free")
        table = self._tables.setdefault(seq_id, [])
        for block in prefix:
            self._evictable.pop(block, None)
            self._refs[block] += 1
            table.append(block)
        if prefix:
            self._chain[seq_id] = (len(prefix), self._hash[prefix[-1]])
        missing = self.blocks_missing(seq_id, num_tokens)
        table.extend(self._take() for _ in range(missing))

    def _take(self) -> int:
        """A block for new K/V: a plain free one, else the least recently used cached one."""
        if self._free:
            block = self._free.pop()
        else:
            block, _ = self._evictable.popitem(last=False)
            del self._cached[self._hash[block]]
            self._hash[block] = None
            self.num_evictions += 1
        self._refs[block] = 1
        return block

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
        """Release all of the sequence's blocks (tail first); the number released. A block no
        other sequence holds becomes free, or evictable when its prefix is cached."""
        table = self._tables.pop(seq_id, [])
        self._chain.pop(seq_id, None)
        for block in reversed(table):
            self._refs[block] -= 1
            if self._refs[block] == 0:
                if self._hash[block] is None:
                    self._free.append(block)
                else:
                    self._evictable[block] = None  # most recently used: evicted last
        return len(table)

    # ---- prefix reuse --------------------------------------------------------------------

    def cached_prefix(self, token_ids: Sequence[int], limit: int | None = None) -> list[int]:
        """Block ids of the longest cached run of full blocks that starts ``token_ids``, at
        most ``limit`` tokens long (whole blocks). Empty when prefix caching is off."""
        if not self.enable_kv_cache_reuse:
            return []
        size = self.block_size
        stop = len(token_ids) if limit is None else min(limit, len(token_ids))
        blocks, parent = [], b""
        for start in range(0, stop - size + 1, size):
            parent = chain_hash(parent, token_ids[start:start + size])
            block = self._cached.get(parent)
            if block is None:
                break
            blocks.append(block)
        return blocks

    def commit(self, seq_id: int, token_ids: Sequence[int], num_computed: int) -> None:
        """Register the sequence's full blocks among its first ``num_computed`` tokens (their
        K/V are in the cache now) so later sequences can reuse them. A block whose prefix is
        already cached under another block stays private to the sequence."""
        table, size = self._tables.get(seq_id), self.block_size
        if not self.enable_kv_cache_reuse or table is None:
            return
        done, parent = self._chain.get(seq_id, (0, b""))
        full = min(num_computed // size, len(table))
        for index in range(done, full):
            block = table[index]
            parent = chain_hash(parent, token_ids[index * size:(index + 1) * size])
            if self._hash[block] is None and parent not in self._cached:
                self._hash[block] = parent
                self._cached[parent] = block
        if full > done:
            self._chain[seq_id] = (full, parent)
