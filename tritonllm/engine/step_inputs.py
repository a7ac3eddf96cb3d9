"""A ``ScheduledBatch`` as the tensors one forward step reads, built once per step and shared
by all layers: RoPE tables, block tables, context masks and prompt-chunk specs."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tritonllm.engine import cpu_kernels
from tritonllm.engine.scheduler import ScheduledBatch


@dataclass
class StepTensors:
    """A ``ScheduledBatch`` as tensors.

    ``cos``/``sin``: ``[T, 1, d]``. Decode rows are the batch's first ``num_decodes`` rows, one
    token each (tokens ``0..B-1``): ``decode_blocks`` holds their block tables padded to the
    longest, flattened ``[B * nblk]``, and ``decode_mask`` ``[B, 1, 1, nblk * block_size]``
    (True = a real context position). ``decode_runs``: when every decode row's blocks are
    consecutive ids, each row's ``(first slot, last slot + 1)`` in the flat cache (then the
    tables are not built); else None. ``prefills``: per other row ``(first_token, stop_token,
    blocks [nblk] or None when the chunk is the whole context, context_len, mask [n, context]
    or None for plain causal)``. With our kernels (``decode_views`` is then moot) the decode
    rows' tables go to the attention kernel as they are: ``decode_tables`` ``[B, nblk]`` int32
    (padded with block 0, never read past ``decode_contexts [B]`` int32), and neither runs nor
    gathered blocks are built. ``fused``: the step as ``tl_decoder_layers`` takes it (pointers
    into this object's tensors), when the runner runs whole layers in our kernel; the tables
    and contexts then have one row per token of the step, and ``prefills`` is empty.
    """

    input_ids: torch.Tensor
    slot_mapping: torch.Tensor
    cos: torch.Tensor
    sin: torch.Tensor
    sample_tokens: torch.Tensor
    num_decodes: int
    decode_blocks: torch.Tensor | None
    decode_mask: torch.Tensor | None
    decode_runs: list[tuple[int, int]] | None
    decode_tables: torch.Tensor | None
    decode_contexts: torch.Tensor | None
    fused: "cpu_kernels.StepC | None"
    prefills: list[tuple[int, int, torch.Tensor | None, int, torch.Tensor | None]]


def rope_tables(hf_config, max_positions: int) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin ``[max_positions, head_dim]`` from transformers' rotary embedding (every
    ``rope_type`` it knows).

    Computed once for positions ``0..max_seq_len-1``; ``max_seq_len`` never exceeds
    ``max_position_embeddings``, where transformers' dynamic scaling does not kick in.
    """
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

    rotary = LlamaRotaryEmbedding(hf_config)
    positions = torch.arange(max_positions)[None]
    with torch.no_grad():
        cos, sin = rotary(torch.zeros(1, dtype=torch.float32), positions)
    return cos[0].contiguous(), sin[0].contiguous()


def attention_tables(batch: ScheduledBatch, every_token: bool = False):
    """Block tables ``[R, nblk]`` int32 (padded with block 0) and contexts ``[R]`` int32 for
    our attention kernel: R = the decode rows, or with ``every_token`` every token of the
    step, a prompt chunk's token at position p attending to positions 0..p."""
    rows = len(batch.query_lens) if every_token else batch.num_decodes
    tables, contexts = [], []
    for i in range(rows):
        n, context = batch.query_lens[i], batch.context_lens[i]
        tables += [batch.block_tables[i]] * n
        contexts += range(context - n + 1, context + 1)
    if not tables:
        return None, None
    width = max(len(table) for table in tables)
    padded = [table + [0] * (width - len(table)) for table in tables]
    return (torch.tensor(padded, dtype=torch.int32),
            torch.tensor(contexts, dtype=torch.int32))


def decode_runs(batch: ScheduledBatch, block_size: int) -> list[tuple[int, int]] | None:
    """Each decode row's context as one slot range, when its blocks are consecutive."""
    runs = []
    for table, context in zip(batch.block_tables[:batch.num_decodes], batch.context_lens):
        first, count = table[0], -(-context // block_size)
        if table[count - 1] - first != count - 1 or table[:count] != list(
                range(first, first + count)):
            return None
        runs.append((first * block_size, first * block_size + context))
    return runs


def decode_blocks(batch: ScheduledBatch, block_size: int):
    """Padded block tables ``[B * nblk]`` and context mask ``[B, 1, 1, nblk * bs]``."""
    count = batch.num_decodes
    if count == 0:
        return None, None
    contexts = batch.context_lens[:count]
    width = -(-max(contexts) // block_size)
    tables = [table[:width] + [0] * (width - len(table[:width]))  # padding: masked out
              for table in batch.block_tables[:count]]
    positions = torch.arange(width * block_size)
    mask = positions[None, :] < torch.tensor(contexts, dtype=torch.long)[:, None]
    return torch.tensor(tables, dtype=torch.long).view(-1), mask[:, None, None, :]


def prefill_specs(batch: ScheduledBatch, ends: list[int], block_size: int):
    """Per row after the decodes: token range, cached-context blocks and causal mask."""
    specs = []
    for i in range(batch.num_decodes, len(batch.query_lens)):
        n, context = batch.query_lens[i], batch.context_lens[i]
        if context == n:  # the chunk is the whole context: plain causal attention
            specs.append((ends[i] - n, ends[i], None, context, None))
            continue
        blocks = torch.tensor(batch.block_tables[i][:-(-context // block_size)],
                              dtype=torch.long)
        key_pos = torch.arange(context)
        query_pos = torch.arange(context - n, context)
        specs.append((ends[i] - n, ends[i], blocks, context,
                      key_pos[None, :] <= query_pos[:, None]))
    return specs


def logit_positions(batch: ScheduledBatch, ends: torch.Tensor,
                    sampled: torch.Tensor) -> torch.Tensor:
    """The step's token indices whose logits are needed, in row order: each sampled row's last
    position, or its last ``num_logits`` positions (a speculative row: the newest token and
    every draft)."""
    if not any(n > 1 for n in batch.num_logits):
        return (ends - 1)[sampled]
    return torch.tensor([p for end, n in zip(ends.tolist(), batch.num_logits)
                         for p in range(end - n, end)], dtype=torch.long)
