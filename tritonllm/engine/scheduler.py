"""Which tokens to compute in the next step. Plain Python: no torch import.

Every step builds one batch, in this order, within ``max_num_tokens`` tokens:

1. one decode row (the newest token) for each running sequence that has its prompt done, so
   running streams advance every step whatever else is waiting;
2. the next prompt chunk of running sequences still prefilling (oldest first);
3. new admissions from the waiting queue (first come, first served; never skipping the head),
   while fewer than ``max_batch_size`` sequences run and the policy allows.

Requests therefore join and leave the running batch at every step. Policies
(TensorRT-LLM's meaning):

- ``guaranteed_no_evict``: admission reserves blocks for prompt + max_new_tokens at once, so a
  running sequence never runs out of cache and nothing is ever evicted.
- ``max_utilization``: admission allocates blocks for the tokens the sequence holds now; decode
  rows grow their tables block by block. When no block is free, the most recently admitted
  running sequence is preempted: its blocks are freed, it goes back to the front of the waiting
  queue, and when readmitted it recomputes all its tokens (prompt + generated) as a prefill.

Speculative decoding: a decoding sequence with ``draft_ids`` gets one row of its newest token
and its drafts instead of a decode row (after the decode rows, within ``max_num_tokens``,
drafts trimmed to fit; never preempting anyone for them), with a logit for each position. Its
``num_computed_tokens`` then runs past its tokens until the engine has accepted some drafts
and set it back; its blocks are registered for reuse only then (:meth:`Scheduler.commit_seq`).

KV-cache reuse (``enable_kv_cache_reuse``): at admission the sequence looks up the longest run
of cached full blocks that starts its tokens (``BlockManager.cached_prefix``), shares them and
starts computing after them, always leaving at least its last token to compute so that the step
samples from it. A preempted sequence finds its own released blocks this way unless they were
evicted meanwhile. :meth:`Scheduler.commit`, called once a step's forward has written its K/V,
registers newly filled blocks for later requests. Counters (tokens, as vLLM counts them):
``prefix_cache_queries`` (tokens of admitted sequences looked up) and ``prefix_cache_hits``
(of those, tokens found cached).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from tritonllm.engine.config import EngineConfig
from tritonllm.engine.kv_cache import BlockManager
from tritonllm.engine.request import Sequence, SequenceStatus


@dataclass
class ScheduledBatch:
    """One step's work, as plain lists; the runner turns them into tensors.

    Rows: one per scheduled sequence, decode rows first (``num_decodes`` of them).
    Tokens: ``T = sum(query_lens)`` flattened in row order: ``input_ids``, ``positions``
    (0-based position in the sequence) and ``slot_mapping`` (flat KV-cache slot to write each
    token's K/V to). Per row: ``context_lens`` = tokens in the cache once this step's K/V are
    written (the row attends to all of them, causally), ``block_tables`` = the sequence's block
    ids, ``sample`` = whether a token is sampled from the row's last position (False for a
    prompt chunk that does not finish the prompt), ``num_logits`` = how many of the row's last
    positions need logits (0 or 1; 1 + drafts for a speculative row).
    """

    seqs: list[Sequence] = field(default_factory=list)
    query_lens: list[int] = field(default_factory=list)
    context_lens: list[int] = field(default_factory=list)
    block_tables: list[list[int]] = field(default_factory=list)
    sample: list[bool] = field(default_factory=list)
    num_logits: list[int] = field(default_factory=list)
    input_ids: list[int] = field(default_factory=list)
    positions: list[int] = field(default_factory=list)
    slot_mapping: list[int] = field(default_factory=list)
    num_decodes: int = 0

    @property
    def seq_ids(self) -> list[int]:
        return [seq.seq_id for seq in self.seqs]

    @property
    def num_rows(self) -> int:
        return len(self.seqs)

    @property
    def num_tokens(self) -> int:
        return len(self.input_ids)

    @property
    def num_prefill_tokens(self) -> int:
        return self.num_tokens - self.num_decodes


class Scheduler:
    """Waiting and running queues over one ``BlockManager``; see the module docstring."""

    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        self.block_manager = BlockManager(config.num_blocks, config.tokens_per_block,
                                          config.enable_kv_cache_reuse)
        self.waiting: deque[Sequence] = deque()
        self.running: list[Sequence] = []  # in admission order
        self.num_preempted = 0
        self.prefix_cache_queries = 0
        self.prefix_cache_hits = 0

    def add(self, seq: Sequence) -> None:
        """Queue a new sequence (it must fit the cache on its own: the engine checks)."""
        seq.status = SequenceStatus.WAITING
        self.waiting.append(seq)

    def has_work(self) -> bool:
        return bool(self.waiting or self.running)

    def remove(self, seq: Sequence) -> None:
        """Take a finished or cancelled sequence out of the queues and free its blocks now."""
        if seq.status is SequenceStatus.RUNNING:
            self.running.remove(seq)
        elif seq.status is SequenceStatus.WAITING:
            self.waiting.remove(seq)
        self.block_manager.free(seq.seq_id)
        seq.status = SequenceStatus.FINISHED

    def commit(self, batch: ScheduledBatch) -> None:
        """The batch's K/V are in the cache now: make its newly full blocks reusable. Call it
        after the forward succeeded (never for a failed one: its blocks hold no valid K/V).
        Speculative rows wait until their drafts are accepted (:meth:`commit_seq`)."""
        for seq in batch.seqs:
            if seq.num_computed_tokens <= seq.num_tokens:
                self.commit_seq(seq)

    def commit_seq(self, seq: Sequence) -> None:
        self.block_manager.commit(seq.seq_id, seq.token_ids, seq.num_computed_tokens)

    def schedule(self) -> ScheduledBatch | None:
        """Pick this step's rows (None when there is nothing to do) and mark them computed."""
        rows: list[tuple[Sequence, int]] = []
        budget = self.config.max_num_tokens
        preempted = self._schedule_decodes(rows)
        num_decodes = len(rows)
        budget = self._schedule_drafts(rows, budget - num_decodes)
        budget = self._schedule_prefills(rows, budget)
        if not preempted:  # just-freed blocks go to the sequences that were running
            self._admit(rows, budget)
        return self._build_batch(rows, num_decodes) if rows else None

    def _schedule_decodes(self, rows: list[tuple[Sequence, int]]) -> bool:
        """Add a decode row per decoding sequence; True if any sequence was preempted."""
        preempted = False
        for seq in list(self.running):
            if seq.status is not SequenceStatus.RUNNING or not seq.is_decoding:
                continue
            need = seq.num_computed_tokens + 1 + len(seq.draft_ids)
            if seq.draft_ids and self.block_manager.can_allocate(seq.seq_id, need):
                self.block_manager.allocate(seq.seq_id, need)
                continue  # a speculative row (_schedule_drafts)
            seq.draft_ids = []
            reserved, evicted = self._reserve_next_slot(seq)
            preempted |= evicted
            if reserved:
                rows.append((seq, 1))
        return preempted

    def _schedule_drafts(self, rows: list[tuple[Sequence, int]], budget: int) -> int:
        """Add a speculative row per sequence with drafts (its newest token first, always),
        drafts trimmed to what the budget leaves; the budget left."""
        drafting = [seq for seq in self.running
                    if seq.draft_ids and seq.status is SequenceStatus.RUNNING]
        spare = budget - len(drafting)
        for seq in drafting:
            del seq.draft_ids[max(0, spare):]
            spare -= len(seq.draft_ids)
            rows.append((seq, 1 + len(seq.draft_ids)))
            budget -= 1 + len(seq.draft_ids)
        return budget

    def _reserve_next_slot(self, seq: Sequence) -> tuple[bool, bool]:
        """Blocks for the token to compute, preempting newest-first; (reserved, preempted)."""
        need = seq.num_computed_tokens + 1
        evicted = False
        while not self.block_manager.can_allocate(seq.seq_id, need):
            victim = self.running[-1]
            self._preempt(victim)
            evicted = True
            if victim is seq:
                return False, True
        self.block_manager.allocate(seq.seq_id, need)
        return True, evicted

    def _preempt(self, seq: Sequence) -> None:
        if self.config.batch_scheduler_policy != "max_utilization":
            raise RuntimeError(f"guaranteed_no_evict: sequence {seq.seq_id} ran out of cache")
        self.running.remove(seq)
        self.block_manager.free(seq.seq_id)
        seq.num_computed_tokens = 0
        seq.draft_ids = []
        seq.status = SequenceStatus.WAITING
        self.waiting.appendleft(seq)
        self.num_preempted += 1

    def _schedule_prefills(self, rows: list[tuple[Sequence, int]], budget: int) -> int:
        """Add prompt chunks of running sequences still prefilling; the budget left."""
        for seq in self.running:
            if budget <= 0:
                break
            if seq.is_decoding:
                continue
            n = self._chunk_len(seq.num_uncomputed, budget)
            if n:
                rows.append((seq, n))
                budget -= n
        return budget

    def _chunk_len(self, remaining: int, budget: int) -> int:
        """Tokens to compute now, of ``remaining``, within ``budget`` (0: wait for a later step)."""
        if remaining <= budget:
            return remaining
        if self.config.enable_chunked_context:
            return budget
        # Without chunking a prefill runs whole; only a recompute after preemption can be longer
        # than a whole step, and it is then chunked so that it cannot wait forever.
        if remaining > self.config.max_num_tokens and budget == self.config.max_num_tokens:
            return budget
        return 0

    def _admit(self, rows: list[tuple[Sequence, int]], budget: int) -> None:
        """Move waiting sequences into the running batch while limits and policy allow."""
        while self.waiting and budget > 0 and len(self.running) < self.config.max_batch_size:
            seq = self.waiting[0]
            prefix = self.block_manager.cached_prefix(seq.token_ids, limit=seq.num_tokens - 1)
            hit = len(prefix) * self.config.tokens_per_block
            n = self._chunk_len(seq.num_tokens - hit, budget)
            if n == 0 or not self._reserve_admission(seq, prefix):
                return
            self.waiting.popleft()
            seq.status = SequenceStatus.RUNNING
            seq.num_computed_tokens = hit
            seq.num_reused_blocks = len(prefix)
            self.prefix_cache_queries += seq.num_tokens
            self.prefix_cache_hits += hit
            self.running.append(seq)
            rows.append((seq, n))
            budget -= n

    def _reserve_admission(self, seq: Sequence, prefix: list[int]) -> bool:
        """Allocate the blocks the policy requires up front (sharing the cached ``prefix``
        blocks); False when they are not free."""
        if self.config.batch_scheduler_policy == "guaranteed_no_evict":
            tokens = seq.max_tokens
        else:
            tokens = seq.num_tokens
        if not self.block_manager.can_allocate(seq.seq_id, tokens, prefix):
            return False
        self.block_manager.allocate(seq.seq_id, tokens, prefix)
        return True

    def _build_batch(self, rows: list[tuple[Sequence, int]], num_decodes: int) -> ScheduledBatch:
        batch = ScheduledBatch(num_decodes=num_decodes)
        for seq, n in rows:
            start = seq.num_computed_tokens
            drafted = len(seq.draft_ids)
            batch.seqs.append(seq)
            batch.query_lens.append(n)
            batch.context_lens.append(start + n)
            batch.block_tables.append(list(self.block_manager.block_table(seq.seq_id)))
            batch.sample.append(start + n == seq.num_tokens + drafted)
            batch.num_logits.append(1 + drafted if batch.sample[-1] else 0)
            tokens = seq.token_ids + seq.draft_ids if drafted else seq.token_ids
            batch.input_ids.extend(tokens[start:start + n])
            batch.positions.extend(range(start, start + n))
            batch.slot_mapping.extend(self.block_manager.slots(seq.seq_id, start, start + n))
            seq.num_computed_tokens = start + n
        return batch
