"""What the engine reports about itself (``LLMEngine.stats()``): counters and current state,
torch-free, so metrics code can read it without loading the engine."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class EngineStats:
    """Counters since start (first group) and the current state (second group).

    ``steps_with_multiple_decodes``: steps in which more than one request decoded together
    (shared decode steps: inflight batching observed). ``preempted``: pauses under
    ``max_utilization``. ``rejected``: requests refused because the queue was full.
    KV-cache reuse, as vLLM counts it: ``prefix_cache_queries``: tokens of admitted requests
    looked up in the cache; ``prefix_cache_hits``: of those, tokens found cached (not
    computed); ``prefix_cache_evictions``: cached blocks dropped to make room.
    ``*_kv_*``: KV-cache capacity, free vs total, in blocks and tokens; free counts cached
    blocks no request holds (they are evicted when their space is needed);
    ``cached_kv_blocks``: blocks holding a reusable prefix, in use or not.
    ``step_seconds``: wall time in steps that ran a batch (intake, scheduling, forward,
    sampling, sending outputs); ``forward_seconds``: of that, the batched forward alone. Their
    difference is the engine's own per-step work; wall time beyond ``step_seconds`` is idle.
    ``guided_requests``: requests admitted with a grammar (guided decoding);
    ``grammar_mask_seconds``: of ``step_seconds``, the time spent computing their grammars'
    token masks: what guided decoding costs the steps.
    Speculative decoding, as vLLM counts it: ``spec_drafts``: drafts verified (one per request
    and step that drafted); ``spec_draft_tokens``: tokens drafted; ``spec_accepted_tokens``: of
    those, tokens accepted.
    """

    steps: int = 0
    prefill_tokens: int = 0
    decode_tokens: int = 0
    generated_tokens: int = 0
    steps_with_multiple_decodes: int = 0
    max_running_seen: int = 0
    completed: int = 0
    cancelled: int = 0
    failed: int = 0
    preempted: int = 0
    rejected: int = 0
    prefix_cache_queries: int = 0
    prefix_cache_hits: int = 0
    prefix_cache_evictions: int = 0
    step_seconds: float = 0.0
    forward_seconds: float = 0.0
    guided_requests: int = 0
    grammar_mask_seconds: float = 0.0
    spec_drafts: int = 0
    spec_draft_tokens: int = 0
    spec_accepted_tokens: int = 0
    running: int = 0
    waiting: int = 0
    free_kv_blocks: int = 0
    total_kv_blocks: int = 0
    free_kv_tokens: int = 0
    total_kv_tokens: int = 0
    cached_kv_blocks: int = 0

    def count_step(self, batch, running: int) -> None:
        """A step that ran ``batch`` (a ``ScheduledBatch``) with ``running`` requests."""
        self.steps += 1
        self.decode_tokens += batch.num_decodes
        self.prefill_tokens += batch.num_prefill_tokens
        self.steps_with_multiple_decodes += batch.num_decodes > 1
        self.max_running_seen = max(self.max_running_seen, running)

    def count_draft(self, drafted: int, accepted: int) -> None:
        self.spec_drafts += 1
        self.spec_draft_tokens += drafted
        self.spec_accepted_tokens += accepted

    def copy_state(self, scheduler, inbox: int, mask_seconds: float) -> None:
        """The current queues and cache capacity, from the engine's ``Scheduler``; ``inbox``:
        requests submitted and not yet queued."""
        blocks = scheduler.block_manager
        self.running = len(scheduler.running)
        self.waiting = len(scheduler.waiting) + inbox
        self.preempted = scheduler.num_preempted
        self.prefix_cache_queries = scheduler.prefix_cache_queries
        self.prefix_cache_hits = scheduler.prefix_cache_hits
        self.prefix_cache_evictions = blocks.num_evictions
        self.free_kv_blocks, self.total_kv_blocks = blocks.num_free_blocks, blocks.num_blocks
        self.free_kv_tokens, self.total_kv_tokens = blocks.num_free_tokens, blocks.num_total_tokens
        self.cached_kv_blocks = blocks.num_cached_blocks
        self.grammar_mask_seconds = mask_seconds
