"""Draft-target speculative decoding: a smaller model of the same vocabulary drafts the tokens.

The draft model (``speculative_model_dir``: any Llama checkpoint the runner loads, e.g. a
student from ``tritonllm compress``) runs in this engine's step with its own :class:`ModelRunner`
and its own paged KV cache. Each step, for the requests the :class:`Proposer` lets draft, it
feeds what its cache lacks of the request's tokens (the whole prompt the first time; then the
one or two tokens the target appended) and takes its arg-max, then feeds each draft back for the
next, ``room`` tokens in all, every request in one batch per round. The target verifies them
as it verifies n-gram drafts (:mod:`tritonllm.engine.speculative`): a draft the draft model
proposes with certainty, so greedy output is token for token the target's and sampled output
keeps the target's distribution.

The cache follows the target without being told what was rejected: each step it keeps the
longest prefix of what it computed that the request's tokens still start with, and
recomputes the rest.
"""

from __future__ import annotations

import dataclasses
import logging

import torch

from tritonllm.engine.config import EngineConfig
from tritonllm.engine.kv_cache import BlockManager
from tritonllm.engine.request import Sequence
from tritonllm.engine.scheduler import ScheduledBatch
from tritonllm.engine.speculative import Proposer

log = logging.getLogger(__name__)


class DraftModelProposer(Proposer):
    """Drafts with ``draft`` (a ``ModelRunner``); ``target``'s vocabulary must be the same."""

    def __init__(self, draft, target, max_draft_len: int) -> None:
        super().__init__(max_draft_len)
        if draft.vocab_size != target.vocab_size:
            raise ValueError(f"speculative_model_dir: the draft model's vocab_size "
                             f"{draft.vocab_size} differs from the target's "
                             f"{target.vocab_size}: a draft model must share the tokenizer")
        self.runner = draft
        config = draft.config
        self.blocks = BlockManager(config.num_blocks, config.tokens_per_block,
                                   enable_kv_cache_reuse=False)
        self._cached: dict[int, list[int]] = {}  # seq_id -> tokens whose K/V are in the cache

    @classmethod
    def load(cls, config: EngineConfig, target) -> "DraftModelProposer":
        """Load ``config.speculative_model_dir`` with ``config``'s limits and weights."""
        from tritonllm.engine.runner import ModelRunner
        from tritonllm.engine.threads import on_own_thread

        draft_config = dataclasses.replace(config, speculative_decoding_mode="off",
                                           speculative_model_dir="")
        try:
            draft = on_own_thread(ModelRunner.from_dir, config.speculative_model_dir,
                                  draft_config)
        except (OSError, ValueError) as exc:
            raise ValueError(f"speculative_model_dir: {config.speculative_model_dir}: "
                             f"{exc}") from exc
        return cls(draft, target, config.max_draft_len)

    def release(self, seq_id: int) -> None:
        super().release(seq_id)
        self._cached.pop(seq_id, None)
        self.blocks.free(seq_id)

    def _draft(self, wanted: list[tuple[Sequence, int]]) -> None:
        feeds: dict[int, list[int]] = {}  # seq_id -> tokens to run this round
        rooms: dict[int, int] = {}
        seqs = {}
        for seq, room in wanted:
            cached = self._cached.setdefault(seq.seq_id, [])
            keep = _common_prefix(cached, seq.token_ids, seq.num_tokens - 1)
            # Room for every token fed: all but the last draft, which is never run.
            if not self.blocks.can_allocate(seq.seq_id, seq.num_tokens + room - 1):
                continue
            self.blocks.allocate(seq.seq_id, seq.num_tokens + room - 1)
            del cached[keep:]
            feeds[seq.seq_id] = seq.token_ids[keep:]
            rooms[seq.seq_id] = room
            seqs[seq.seq_id] = seq
        try:
            self._rounds(feeds, rooms, seqs)
        except Exception:  # the target decodes on without drafts; the cache is rebuilt
            log.exception("draft model: drafting failed; this step decodes without drafts")
            for seq_id, seq in seqs.items():
                seq.draft_ids = []
                self._cached[seq_id] = []

    def _rounds(self, feeds: dict[int, list[int]], rooms: dict[int, int], seqs: dict) -> None:
        """Run the draft model round by round until every request has its ``room`` drafts."""
        while feeds:
            for seq_id, token in zip(feeds, self._run(feeds)):
                seq = seqs[seq_id]
                seq.draft_ids.append(token)
                feeds[seq_id] = [token]
            for seq_id in [s for s in feeds if len(seqs[s].draft_ids) == rooms[s]]:
                del feeds[seq_id]

    def _run(self, feeds: dict[int, list[int]]) -> list[int]:
        """One forward of the draft model over each request's ``feeds`` (its K/V written, its
        cached tokens extended); the arg-max after each, in ``feeds``' order."""
        order = sorted(feeds, key=lambda seq_id: len(feeds[seq_id]) > 1)  # decode rows first
        batch = ScheduledBatch(num_decodes=sum(len(feeds[s]) == 1 for s in feeds))
        for seq_id in order:
            cached, tokens = self._cached[seq_id], feeds[seq_id]
            start, stop = len(cached), len(cached) + len(tokens)
            batch.query_lens.append(len(tokens))
            batch.context_lens.append(stop)
            batch.block_tables.append(list(self.blocks.block_table(seq_id)))
            batch.sample.append(True)
            batch.num_logits.append(1)
            batch.input_ids.extend(tokens)
            batch.positions.extend(range(start, stop))
            batch.slot_mapping.extend(self.blocks.slots(seq_id, start, stop))
            cached.extend(tokens)
        chosen = dict(zip(order, torch.argmax(self.runner.forward(batch), dim=-1).tolist()))
        return [chosen[seq_id] for seq_id in feeds]


def _common_prefix(cached: list[int], tokens: list[int], limit: int) -> int:
    """How many leading tokens ``cached`` and ``tokens`` share, at most ``limit``."""
    n = min(len(cached), limit)
    for i in range(n):
        if cached[i] != tokens[i]:
            return i
    return n
