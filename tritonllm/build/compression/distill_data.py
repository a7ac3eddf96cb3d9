"""Training rows for distillation, with the teacher's answers computed once.

Two sources, both from the package alone (no dataset download):

- the bundled calibration text (``corpus.CALIBRATION``), packed into full rows of ``seq_len``
  tokens (no padding inside a row; the last, short remainder is dropped);
- text sampled from the teacher itself (``generate_tokens``), each sample started by the
  opening words of one calibration sentence. Distilling on the teacher's own generations is
  data-free KD (LLM-QAT, Liu et al. 2023, trained on them instead of a dataset): the student is
  taught where the teacher puts its probability mass, on far more contexts than the 1.3 k-token
  calibration text holds. ``corpus.HELDOUT`` is never a prompt and never a row.

Each row's targets are the teacher's ``top_k`` logits at every position (``index``, ``logit``),
so the training loop runs only the student: for sampled text they come for free from
generation (``output_logits``), for the bundled text from one teacher forward. ``mask`` marks
the positions that have a target (not the prompt, not after end-of-sequence, not the last).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

# the teacher's own distribution, its far tail cut
SAMPLING = {"do_sample": True, "temperature": 1.0, "top_p": 0.95}
PROMPT_WORDS = 6  # words of a calibration sentence that start a sample
GENERATE_BATCH = 16  # samples generated together (KV-cached, one core: ~3x the rate of batch 1)


@dataclass(frozen=True)
class Rows:
    """``ids`` [N, L] int64; ``mask`` [N, L] bool; ``index`` [N, L, k] int64 and ``logit``
    [N, L, k] float16: the teacher's k largest logits for the token after each position."""

    ids: torch.Tensor
    mask: torch.Tensor
    index: torch.Tensor
    logit: torch.Tensor

    def __len__(self) -> int:
        return self.ids.shape[0]

    @property
    def target_tokens(self) -> int:
        return int(self.mask.sum())

    def take(self, rows: torch.Tensor) -> Rows:
        return Rows(self.ids[rows], self.mask[rows], self.index[rows], self.logit[rows])

    @staticmethod
    def cat(parts: list[Rows]) -> Rows:
        return Rows(*(torch.cat([getattr(p, f) for p in parts])
                      for f in ("ids", "mask", "index", "logit")))


def packed(tokenizer, text: str, seq_len: int) -> torch.Tensor:
    """``text`` as full rows [N, seq_len]; at least one row."""
    ids = tokenizer(text, return_tensors="pt").input_ids[0]
    if len(ids) < seq_len:
        raise ValueError(f"compression.distill.seq_len: {seq_len} is more than the "
                         f"{len(ids)} tokens of the training text")
    return ids[:len(ids) // seq_len * seq_len].view(-1, seq_len)


def scored(teacher, ids: torch.Tensor, top_k: int, batch: int = 4) -> Rows:
    """Rows of ``ids`` with the teacher's top-k logits from one forward pass."""
    index, logit = [], []
    with torch.no_grad():
        for chunk in ids.split(batch):
            top = teacher(chunk, use_cache=False).logits.float().topk(top_k, dim=-1)
            index.append(top.indices)
            logit.append(top.values.half())
    mask = torch.ones_like(ids, dtype=torch.bool)
    mask[:, -1] = False  # the last position's next token is not in the row
    return Rows(ids, mask, torch.cat(index), torch.cat(logit))


def prompts(tokenizer, text: str) -> list[list[int]]:
    """The first PROMPT_WORDS words of every sentence of ``text`` that has more, tokenized."""
    out = []
    for sentence in re.split(r"(?<=[.!?:])\s+|\n+", text):
        words = sentence.split()
        if len(words) > PROMPT_WORDS:
            out.append(tokenizer(" ".join(words[:PROMPT_WORDS])).input_ids)
    return out


def generated(teacher, tokenizer, starts: list[list[int]], tokens: int, seq_len: int,
              top_k: int, seed: int = 0, log=print) -> Rows:
    """At least ``tokens`` target tokens of teacher samples, rows of ``seq_len``, with the
    teacher's top-k logits at each sampled position (see the module docstring)."""
    torch.manual_seed(seed)  # transformers samples from the global generator
    starts = [s[:seq_len // 2] for s in starts]  # at least half of every row is sampled
    parts, have, i = [], 0, 0
    while have < tokens:
        batch = [starts[(i + j) % len(starts)] for j in range(GENERATE_BATCH)]
        parts.append(_sample(teacher, tokenizer, batch, seq_len, top_k))
        have += parts[-1].target_tokens
        i += GENERATE_BATCH
        log(f"distill: generated {have}/{tokens} teacher tokens")
    return Rows.cat(parts)


def _sample(teacher, tokenizer, starts: list[list[int]], seq_len: int, top_k: int) -> Rows:
    width = max(len(s) for s in starts)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    ids = torch.tensor([[pad] * (width - len(s)) + s for s in starts])  # left-padded
    attention = torch.tensor([[0] * (width - len(s)) + [1] * len(s) for s in starts])
    with torch.no_grad():
        out = teacher.generate(ids, attention_mask=attention, max_new_tokens=seq_len - width,
                               min_new_tokens=seq_len - width, pad_token_id=pad,
                               output_logits=True, return_dict_in_generate=True, **SAMPLING)
    new = out.sequences[:, width:]  # [B, G]
    top = torch.stack(out.logits, dim=1).float().topk(top_k, dim=-1)  # [B, G, k]
    return _rows(starts, new, top.indices, top.values.half(), seq_len, pad)


def _rows(starts, new, index, logit, seq_len: int, pad: int) -> Rows:
    """Unpadded rows: prompt + sampled tokens, targets at the positions that sampled them."""
    n, k = len(starts), index.shape[-1]
    ids = torch.full((n, seq_len), pad, dtype=torch.long)
    mask = torch.zeros(n, seq_len, dtype=torch.bool)
    idx = torch.zeros(n, seq_len, k, dtype=torch.long)
    val = torch.zeros(n, seq_len, k, dtype=torch.float16)
    for r, start in enumerate(starts):
        p, g = len(start), min(new.shape[1], seq_len - len(start))
        ids[r, :p], ids[r, p:p + g] = torch.tensor(start), new[r, :g]
        # logits of sampling step j sit at position p - 1 + j (they predicted token p + j)
        idx[r, p - 1:p - 1 + g], val[r, p - 1:p - 1 + g] = index[r, :g], logit[r, :g]
        mask[r, p - 1:p - 1 + g] = True
    return Rows(ids, mask, idx, val)
