"""Speculative decoding by n-gram lookup (prompt lookup), with the output of decoding one token
per step.

Each step, for every running request that may speculate, :class:`NgramProposer` looks for the
latest earlier occurrence of the request's last ``n`` tokens (``n`` from
``max_matching_ngram_size`` down to 1) in its prompt and generated text, and drafts the tokens
that followed it: at most ``max_draft_len`` after a match of ``max_matching_ngram_size``
tokens, at most ``n`` after a shorter one. The scheduler then runs the request's newest token
and its drafts as one row (the model attends causally over them, as in a prompt chunk), and the
engine chooses the target's token at every position as usual (arg-max, or a draw for a
sampling request): drafts are accepted while they equal it, and the first choice that differs
(or the one after the last draft) is the step's own token. A step that accepts ``j`` drafts
appends ``j + 1`` tokens for one read of the weights.

The output is what one token per step gives. Greedy: token for token. Sampling: drawing from
the target's distribution and keeping a draft when the draw equals it accepts the draft with
probability p(draft) and otherwise yields a draw from p without the draft — speculative
sampling (Leviathan et al., 2023) for a draft that proposes one token with certainty — so the
distribution is exactly the target's; the sampler stops drawing at the first rejection, so a
seeded request consumes its generator as without speculation and gets the same tokens.

Each position is chosen as if the drafts before it had been generated: penalties count them,
bad words and the end token's ban before ``min_tokens`` look at them, and a guided request's
grammar allows what it allows after them (the sampler). A request whose drafts are mostly
rejected stops drafting for a while (``PAUSE_STEPS``), and
nobody drafts while more than ``DISABLE_BY_BATCH_SIZE`` requests decode, so a workload that
speculation does not help costs little. The rejected drafts' K/V are simply not counted as
computed: the next step overwrites them.
"""

from __future__ import annotations

from dataclasses import dataclass

from tritonllm.engine.request import Sequence

# Verifying drafts costs compute on CPU (a row of 5 tokens takes 1.33x a decode row on two
# threads, docs/performance.md). With more requests decoding than this a step is already
# compute-bound, and nobody drafts (vLLM's speculative_disable_by_batch_size).
DISABLE_BY_BATCH_SIZE = 4
# Below this acceptance (accepted / drafted tokens, over at least MIN_DRAFTED), a request stops
# drafting for PAUSE_STEPS steps, then tries again with fresh counts.
MIN_ACCEPTANCE = 0.25
MIN_DRAFTED = 16
PAUSE_STEPS = 32


@dataclass
class DraftState:
    """One request's acceptance record."""

    drafted: int = 0
    accepted: int = 0
    paused_until: int = 0  # step number


class Proposer:
    """Decides who drafts and how many tokens; subclasses say what (:meth:`_draft`).
    :meth:`release` forgets a finished request."""

    def __init__(self, max_draft_len: int) -> None:
        self.max_draft_len = max_draft_len
        self._states: dict[int, DraftState] = {}
        self._step = 0

    def release(self, seq_id: int) -> None:
        self._states.pop(seq_id, None)

    def propose(self, seqs: list[Sequence], max_seq_len: int) -> None:
        """Set ``draft_ids`` of each decoding request (empty when it does not speculate)."""
        self._step += 1
        for seq in seqs:
            seq.draft_ids = []
        if sum(seq.is_decoding for seq in seqs) > DISABLE_BY_BATCH_SIZE:
            return
        wanted = []
        for seq in seqs:
            if not seq.is_decoding:
                continue
            state = self._states.setdefault(seq.seq_id, DraftState())
            if state.paused_until > self._step:
                continue
            room = min(self.max_draft_len, seq.request.max_new_tokens - seq.num_generated - 1,
                       max_seq_len - seq.num_tokens)
            if room > 0:
                wanted.append((seq, room))
        if wanted:
            self._draft(wanted)

    def _draft(self, wanted: list[tuple[Sequence, int]]) -> None:
        """Set ``draft_ids`` (at most ``room`` tokens) for each ``(seq, room)``."""
        raise NotImplementedError

    def record(self, seq: Sequence, drafted: int, accepted: int) -> None:
        """Count a verified draft; pause a request whose drafts are mostly rejected."""
        state = self._states.get(seq.seq_id)
        if state is None:
            return
        state.drafted += drafted
        state.accepted += accepted
        if state.drafted >= MIN_DRAFTED and state.accepted < MIN_ACCEPTANCE * state.drafted:
            state.paused_until = self._step + PAUSE_STEPS
            state.drafted = state.accepted = 0


@dataclass
class NgramIndex:
    """One request's n-grams: per n, n-gram -> end of its latest occurrence."""

    index: list[dict[tuple[int, ...], int]]
    indexed: int = 0  # n-grams ending before this position are in the index


class NgramProposer(Proposer):
    """Drafts what followed the latest earlier occurrence of the request's last tokens."""

    def __init__(self, max_draft_len: int, max_matching_ngram_size: int) -> None:
        super().__init__(max_draft_len)
        self.max_ngram = max_matching_ngram_size
        self._indexes: dict[int, NgramIndex] = {}

    def release(self, seq_id: int) -> None:
        super().release(seq_id)
        self._indexes.pop(seq_id, None)

    def _draft(self, wanted: list[tuple[Sequence, int]]) -> None:
        for seq, room in wanted:
            index = self._indexes.get(seq.seq_id)
            if index is None:
                index = self._indexes[seq.seq_id] = NgramIndex([{} for _ in
                                                                range(self.max_ngram + 1)])
            seq.draft_ids = self._lookup(seq.token_ids, index, room)

    def _lookup(self, tokens: list[int], state: NgramIndex, room: int) -> list[int]:
        # Index every n-gram that has a continuation: those ending before the last token.
        for end in range(max(state.indexed, 1), len(tokens)):
            for n in range(1, min(self.max_ngram, end) + 1):
                state.index[n][tuple(tokens[end - n:end])] = end
        state.indexed = len(tokens)
        for n in range(min(self.max_ngram, len(tokens) - 1), 0, -1):
            end = state.index[n].get(tuple(tokens[-n:]))
            if end is not None:  # a shorter match is weaker evidence: it drafts at most n
                return tokens[end:end + (room if n == self.max_ngram else min(room, n))]
        return []


def make_proposer(config, runner) -> Proposer | None:
    """The engine's proposer for ``config.speculative_decoding_mode`` (None: off); a draft
    model is loaded from ``config.speculative_model_dir`` and must share ``runner``'s
    vocabulary."""
    mode = config.speculative_decoding_mode
    if mode == "ngram":
        return NgramProposer(config.max_draft_len, config.max_matching_ngram_size)
    if mode == "draft_target":
        from tritonllm.engine.draft_model import DraftModelProposer

        return DraftModelProposer.load(config, runner)
    return None


def accept(drafts: list[int], choices: list, append) -> tuple[int, str | None]:
    """Verify a speculative row. ``choices``: the target's token at each position (a sampler
    ``Choice`` per position, the newest token's first; None past a rejected draft, never
    reached); ``append(choice)`` adds one token and returns the request's finish reason, or
    None. Tokens are appended while the drafts equal them, then the first that differs or the
    one after the last draft. Returns (drafts accepted, the finish reason or None)."""
    accepted = 0
    for choice in choices:
        reason = append(choice)
        if reason or accepted == len(drafts) or choice.token != drafts[accepted]:
            return accepted, reason
        accepted += 1
    return accepted, None
