"""What the client returns: a whole :class:`Completion` or streamed :class:`Chunk` s, built from
the ensemble's outputs.

A transport yields each server response as ``Outputs``: ensemble output name -> the tensor's
values flattened to a list (STRING values decoded to ``str``). Outputs the server did not send
are absent. Times are seconds on the client's monotonic clock, counted from sending the request.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tritonllm.contract import TOP_LOG_PROB_IDS, TOP_LOG_PROBS

from ._errors import ServerError

Outputs = dict[str, list]


@dataclass(frozen=True)
class Chunk:
    """One streamed response: ``text`` is the delta since the previous chunk, so the
    concatenation of a stream's texts is the whole completion (including leading spaces and
    characters that span tokens). ``index`` counts the request's responses from 0;
    ``arrival_s`` is when it arrived. ``log_probs`` are this chunk's tokens' log probabilities
    when ``return_log_probs`` was asked. ``num_input_tokens`` / ``num_output_tokens``: the
    prompt's tokens and the tokens generated so far (end_id not counted), when the server
    returned them (``return_num_tokens``). With log probabilities or ``num_top_log_probs``
    asked for, ``token_ids`` are this chunk's token ids and ``top_log_probs`` holds, per token,
    the ``(token_id, log_prob)`` alternatives, most likely first."""

    text: str
    index: int
    arrival_s: float
    log_probs: tuple[float, ...] | None = None
    num_input_tokens: int | None = None
    num_output_tokens: int | None = None
    token_ids: tuple[int, ...] | None = None
    top_log_probs: tuple[tuple[tuple[int, float], ...], ...] | None = None


@dataclass(frozen=True)
class Completion:
    """A finished request.

    ``text`` is the generated text (prompt + completion when ``exclude_input_in_output`` was
    False). Token counts are None unless returned (``return_num_tokens``); ``cum_log_prob`` and
    ``log_probs`` are None unless ``return_log_probs``. ``ttft_s``: time to the first response
    (for a non-streamed request the first token arrives with the last, so it equals ``e2e_s``);
    ``e2e_s``: time to the last response.
    """

    text: str
    request_id: str
    num_input_tokens: int | None
    num_output_tokens: int | None
    cum_log_prob: float | None
    log_probs: tuple[float, ...] | None
    ttft_s: float
    e2e_s: float
    token_ids: tuple[int, ...] | None = None
    top_log_probs: tuple[tuple[tuple[int, float], ...], ...] | None = None


_LOG_PROB_OUTPUTS = ("cum_log_probs", "output_log_probs")


def chunk_from(outputs: Outputs, index: int, arrival_s: float, *, log_probs: bool,
               top_k: int = 0) -> Chunk:
    """``log_probs`` / ``top_k``: what was asked for (the server may send log probabilities
    regardless)."""
    values = outputs.get("output_log_probs") if log_probs else None
    return Chunk(
        text="".join(outputs.get("text_output", ())),
        index=index,
        arrival_s=arrival_s,
        log_probs=None if values is None else tuple(float(p) for p in values),
        num_input_tokens=_first_int(outputs, "num_input_tokens"),
        num_output_tokens=_first_int(outputs, "num_output_tokens"),
        token_ids=_token_ids(outputs) if log_probs or top_k else None,
        top_log_probs=_top_log_probs(outputs, top_k),
    )


def _token_ids(outputs: Outputs) -> tuple[int, ...] | None:
    values = outputs.get("output_ids")
    return None if values is None else tuple(int(t) for t in values)


def _top_log_probs(outputs: Outputs, k: int):
    """The flattened ``[tokens, k]`` outputs, regrouped per token."""
    ids, values = outputs.get(TOP_LOG_PROB_IDS), outputs.get(TOP_LOG_PROBS)
    if not k or ids is None or values is None:
        return None
    pairs = [(int(i), float(v)) for i, v in zip(ids, values)]
    return tuple(tuple(pairs[start:start + k]) for start in range(0, len(pairs), k))


def _first_int(outputs: Outputs, name: str) -> int | None:
    values = outputs.get(name)
    return int(values[0]) if values else None


@dataclass
class CompletionBuilder:
    """Folds the responses of one request into a Completion: texts and log probs are joined in
    order; counts and the cumulative log prob keep their last value. ``log_probs``: whether they
    were asked for (the server may send them regardless; they are dropped then)."""

    request_id: str
    log_probs: bool = False
    top_k: int = 0
    _texts: list[str] = field(default_factory=list)
    _log_probs: list[float] | None = None
    _token_ids: list[int] | None = None
    _top: list | None = None
    _last: dict[str, float] = field(default_factory=dict)
    _times: list[float] = field(default_factory=list)

    def add(self, outputs: Outputs, arrival_s: float) -> None:
        if not self.log_probs:
            outputs = {k: v for k, v in outputs.items() if k not in _LOG_PROB_OUTPUTS}
        self._times.append(arrival_s)
        self._texts.extend(outputs.get("text_output", ()))
        if "output_log_probs" in outputs:
            new = [float(p) for p in outputs["output_log_probs"]]
            self._log_probs = (self._log_probs or []) + new
        if (self.log_probs or self.top_k) and (ids := _token_ids(outputs)) is not None:
            self._token_ids = (self._token_ids or []) + list(ids)
        if (top := _top_log_probs(outputs, self.top_k)) is not None:
            self._top = (self._top or []) + list(top)
        for name in ("num_input_tokens", "num_output_tokens", "cum_log_probs"):
            if outputs.get(name):
                self._last[name] = outputs[name][0]

    def build(self) -> Completion:
        if not self._times:
            raise ServerError(f"request {self.request_id}: the server sent no response")
        return Completion(
            text="".join(self._texts),
            request_id=self.request_id,
            num_input_tokens=self._last_as(int, "num_input_tokens"),
            num_output_tokens=self._last_as(int, "num_output_tokens"),
            cum_log_prob=self._last_as(float, "cum_log_probs"),
            log_probs=None if self._log_probs is None else tuple(self._log_probs),
            ttft_s=self._times[0],
            e2e_s=self._times[-1],
            token_ids=None if self._token_ids is None else tuple(self._token_ids),
            top_log_probs=None if self._top is None else tuple(self._top),
        )

    def _last_as(self, kind, name: str):
        return None if name not in self._last else kind(self._last[name])
