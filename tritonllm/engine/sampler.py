"""Token choice per row: penalties, bans, then greedy arg-max or seeded sampling.

Order per row, on the row's fp32 logits:

1. repetition penalty (Hugging Face semantics, over prompt + generated tokens: a seen token's
   logit is divided by the penalty when positive, multiplied when negative);
2. presence and frequency penalties (OpenAI semantics, over generated tokens:
   ``logit -= presence * (count > 0) + frequency * count``);
3. guided decoding: tokens the request's grammar does not allow next are banned;
4. bans: the last token of each bad word whose preceding tokens end the sequence (single-token
   bad words always), and the end ids while fewer than ``min_tokens`` tokens were generated —
   unless the grammar allows nothing else (its output is complete): the grammar wins;
5. greedy: arg-max; sampling: ``/ temperature``, top-k cut, top-p (nucleus) cut, then a draw
   with the request's own ``torch.Generator`` (seeded from ``seed``), so a seeded request gets
   the same tokens whatever else shares its batch.

The log-probability returned is ``log_softmax`` of the final distribution used (after the
steps above, and after temperature and the cuts when sampling); the top log-probabilities a
request asks for come from the same distribution.
"""

from __future__ import annotations

import time
from typing import NamedTuple

import torch

from tritonllm.engine import cpu_kernels
from tritonllm.engine.request import SamplingParams, Sequence


class Choice(NamedTuple):
    """The token chosen for a row, its log-probability, and the row's most likely tokens
    ``[(token_id, log_prob), ...]`` when its request asked for them (else None)."""

    token: int
    log_prob: float
    top: list[tuple[int, float]] | None = None


class Sampler:
    """Holds one ``torch.Generator`` per sampling sequence; ``release`` drops it.

    Greedy rows go through our ``tl_greedy`` (arg-max and log-softmax in two vectorized passes;
    torch's arg-max alone took ~120 us over SmolLM2's 49,152 logits) where our CPU kernels
    load, else through torch. ``grammars`` (:class:`~tritonllm.engine.guided.Grammars`) masks
    the rows of guided requests."""

    def __init__(self, grammars=None) -> None:
        self._generators: dict[int, torch.Generator] = {}
        self._kernels = cpu_kernels.load()
        self._grammars = grammars
        self.mask_seconds = 0.0  # time spent in grammar masks, since start

    def release(self, seq_id: int) -> None:
        self._generators.pop(seq_id, None)

    @torch.inference_mode()
    def sample(self, logits: torch.Tensor, seqs: list[Sequence],
               end_ids: list[list[int]]) -> list[Choice | None]:
        """``logits [S, vocab]`` for ``seqs`` (row order) → a :class:`Choice` per row.

        ``end_ids[i]``: the ids that end ``seqs[i]`` (masked until its ``min_tokens``).
        Penalties and bans are applied to ``logits`` in place (the step's own tensor).

        A speculative row is one sequence on consecutive rows, its drafts in ``draft_ids``.
        Each of its positions is processed as if the drafts before it had been generated
        (penalties, bad words, ``min_tokens``, the grammar's mask). A sampling request's row
        is drawn position by position, and its rows after the first draw that differs from
        its draft get None: drawing from the target's distribution and keeping the draft when
        the draw equals it is speculative sampling for a draft that proposes one token (kept
        with probability p(draft), else a draw from p without it), and it uses the request's
        generator exactly as one token per step does.
        """
        logits = logits.float()
        positions = _positions(seqs)
        allowed = self._allowed(seqs, positions)
        for row, (seq, ends) in enumerate(zip(seqs, end_ids)):
            if row in allowed or self._needs_processing(seq, ends):
                # The drafts before this row's position count as generated.
                logits[row] = self._process(logits[row], seq, ends, allowed.get(row),
                                            seq.draft_ids[:positions[row]])
        results: list[Choice | None] = [None] * len(seqs)
        greedy = [i for i, seq in enumerate(seqs) if seq.request.sampling.greedy]
        if greedy:  # all rows greedy (the usual case): no copy of the rows
            self._greedy(logits if len(greedy) == len(seqs) else logits[greedy], greedy, results)
        for i, (seq, position) in enumerate(zip(seqs, positions)):
            if results[i] is None:
                if position and _draft_rejected(results[i - 1], seq.draft_ids[position - 1]):
                    continue  # the row's tokens end at the rejected draft: no draw here
                results[i] = self._draw(logits[i], seq)
            elif seq.request.num_top_log_probs:
                # The chosen token's log-prob from the same computation as its alternatives'.
                top = _top(torch.log_softmax(logits[i], dim=-1), seq.request.num_top_log_probs)
                token = results[i].token
                log_prob = top[0][1] if top[0][0] == token else results[i].log_prob
                results[i] = Choice(token, log_prob, top)
        return results

    def _allowed(self, seqs: list[Sequence], positions: list[int]) -> dict[int, torch.Tensor]:
        """Row -> the tokens its grammar allows next, for the rows of guided requests (at
        each position of a speculative row: after the drafts before it)."""
        rows = [i for i, seq in enumerate(seqs) if seq.matcher is not None
                and positions[i] == 0]
        if not rows:
            return {}
        start = time.perf_counter()
        plain = [i for i in rows if not seqs[i].draft_ids]
        allowed = dict(zip(plain, self._grammars.allowed([seqs[i].matcher for i in plain])))
        for i in rows:
            if seqs[i].draft_ids:
                masks = self._grammars.allowed_along(seqs[i].matcher, seqs[i].draft_ids)
                allowed.update(zip(range(i, i + len(masks)), masks))
        self.mask_seconds += time.perf_counter() - start
        return allowed

    @staticmethod
    def _needs_processing(seq: Sequence, ends: list[int]) -> bool:
        request = seq.request
        return (request.sampling.has_penalties or bool(request.bad_words)
                or (bool(ends) and seq.num_generated < request.sampling.min_tokens))

    def _process(self, row: torch.Tensor, seq: Sequence, ends: list[int],
                 allowed: torch.Tensor | None = None, drafts: list[int] = ()) -> torch.Tensor:
        """``drafts``: the drafts before this position of a speculative row, generated as far
        as this position is concerned."""
        params = seq.request.sampling
        tokens = seq.token_ids + list(drafts) if drafts else seq.token_ids
        if params.repetition_penalty not in (None, 1.0):
            row = self._repetition_penalty(row, tokens, params.repetition_penalty)
        if params.presence_penalty or params.frequency_penalty:
            row = self._openai_penalties(row, tokens[seq.num_prompt_tokens:], params)
        if allowed is not None:
            row = row.masked_fill(~allowed, float("-inf"))
        banned = self._banned_tokens(seq, ends, tokens)
        if banned:
            banned_ids = torch.tensor(banned, dtype=torch.long)
            if allowed is None or int(allowed.sum()) > int(allowed[banned_ids.unique()].sum()):
                row[banned_ids] = float("-inf")
        return row

    @staticmethod
    def _repetition_penalty(row: torch.Tensor, token_ids: list[int], penalty: float):
        seen = torch.tensor(sorted(set(token_ids)), dtype=torch.long)
        scores = row[seen]
        row[seen] = torch.where(scores > 0, scores / penalty, scores * penalty)
        return row

    @staticmethod
    def _openai_penalties(row: torch.Tensor, generated: list[int], params: SamplingParams):
        if not generated:
            return row
        counts = torch.bincount(torch.tensor(generated, dtype=torch.long),
                                minlength=row.shape[0]).to(row.dtype)
        return row - params.frequency_penalty * counts - params.presence_penalty * (counts > 0)

    @staticmethod
    def _banned_tokens(seq: Sequence, ends: list[int], tokens: list[int]) -> list[int]:
        """Bans after ``tokens`` (the sequence's, and drafts before a speculative position)."""
        banned = []
        for word in seq.request.bad_words:
            prefix = word[:-1]
            if not prefix or tokens[len(tokens) - len(prefix):] == prefix:
                banned.append(word[-1])
        if len(tokens) - seq.num_prompt_tokens < seq.request.sampling.min_tokens:
            banned.extend(ends)
        return banned

    def _greedy(self, logits: torch.Tensor, rows: list[int], results: list) -> None:
        if self._kernels is not None:
            tokens, log_probs = cpu_kernels.greedy(self._kernels, logits)
        else:
            chosen = logits.argmax(dim=-1)
            log_probs = torch.log_softmax(logits, dim=-1).gather(1, chosen[:, None])[:, 0]
            tokens, log_probs = chosen.tolist(), log_probs.tolist()
        for row, token, log_prob in zip(rows, tokens, log_probs):
            results[row] = Choice(token, log_prob)

    def _draw(self, row: torch.Tensor, seq: Sequence) -> Choice:
        params = seq.request.sampling
        row = row / (params.temperature or 1.0)
        if params.top_k and params.top_k < row.shape[0]:
            kth = torch.topk(row, params.top_k).values[-1]
            row = row.masked_fill(row < kth, float("-inf"))
        if params.top_p is not None and params.top_p < 1.0:
            row = self._top_p(row, params.top_p)
        log_probs = torch.log_softmax(row, dim=-1)
        token = int(torch.multinomial(log_probs.exp(), 1, generator=self._generator(seq)))
        k = seq.request.num_top_log_probs
        return Choice(token, float(log_probs[token]), _top(log_probs, k) if k else None)

    @staticmethod
    def _top_p(row: torch.Tensor, top_p: float) -> torch.Tensor:
        """Keep the smallest set of most likely tokens whose mass reaches ``top_p``."""
        probs, order = torch.softmax(row, dim=-1).sort(descending=True)
        mass_before = probs.cumsum(0) - probs
        drop = order[mass_before >= top_p]
        return row.index_fill(0, drop, float("-inf"))

    def _generator(self, seq: Sequence) -> torch.Generator:
        generator = self._generators.get(seq.seq_id)
        if generator is None:
            generator = torch.Generator()
            seed = seq.request.sampling.seed
            if seed is None:
                generator.seed()
            else:
                generator.manual_seed(seed)
            self._generators[seq.seq_id] = generator
        return generator


def _positions(seqs: list[Sequence]) -> list[int]:
    """Each row's position in its speculative row (one sequence on consecutive rows): 0 for
    the newest token's row (and for every ordinary row), j for the row after draft j - 1."""
    positions = []
    for i, seq in enumerate(seqs):
        positions.append(positions[-1] + 1 if i and seqs[i - 1] is seq else 0)
    return positions


def _draft_rejected(previous: Choice | None, draft: int) -> bool:
    """Whether a speculative row's tokens end before this position: the previous position
    was not drawn, or its draw differs from the draft it verified."""
    return previous is None or previous.token != draft


def _top(log_probs: torch.Tensor, k: int) -> list[tuple[int, float]]:
    """The ``k`` most likely ``(token_id, log_prob)`` of a row, most likely first."""
    values, ids = torch.topk(log_probs, k)
    return list(zip(ids.tolist(), values.tolist()))
