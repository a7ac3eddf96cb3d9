"""Postprocessing: the engine's token ids -> text, stateless per response.

Non-streaming responses carry every token of the sequence and are decoded whole. A streaming
response carries only its new tokens, and decoding them alone loses leading spaces and breaks
characters that span responses. So the CPU engine step sends, with each streamed response,
``preceding_ids``: up to 8 generated ids sent before it. The response's text delta is

    stable(decode(preceding + new))[len(stable(decode(preceding))):]

where ``stable`` drops a trailing incomplete character (U+FFFD), which the next response then
completes. The deltas concatenate to the non-streamed text (``stable(decode(all ids))``): the
first response has no preceding ids and decodes as the start of the text does; every later one
starts where the previous one's stable text ended. Nothing is kept between responses, so any
number of postprocessing instances may serve the responses of one request, and Triton batches
responses of different requests into one ``execute`` (:meth:`Postprocessor.batch`).

Why stateless rather than routing every response of a request to one instance: Triton's
dynamic batcher sends each request to whichever instance is free, with no affinity (only the
sequence batcher routes by id, and it needs client-managed sequence start/end flags that the
ensemble's per-response requests do not have). Routing therefore means one instance (or a
dispatcher inside it), which is the stateful path below; ``tritonllm bench ensemble`` measures
both (docs/performance.md, "Ensemble capacity"). Responses of one request leave postprocessing
in the order they entered it: the rendered config sets ``preserve_ordering``.

The stateful path remains for engines that do not send ``preceding_ids`` (TensorRT-LLM's own
``tensorrtllm`` backend on GPU, clients calling postprocessing directly): a client asks for exact
streamed text with the request parameter ``incremental_detokenize: true`` and a request id
unique to that request; an :class:`IncrementalDetokenizer` keyed by that id, in a bounded LRU,
produces the deltas. That path is exact only while one instance serves the request's responses.
Without either, each response is decoded alone (the reference's lossy behaviour for streams).
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

from tritonllm.contract import INCREMENTAL_DETOKENIZE, parse_bool
from tritonllm.tokenizer import FastDecoder, IncrementalDetokenizer, TextCodec

MAX_LIVE_STREAMS = 4096
INCOMPLETE = "\ufffd"  # what decoding yields for a character whose bytes are not all there


def wants_incremental(parameters: dict) -> bool:
    """True when the request parameters ask for exact streamed text (bool or "true")."""
    return parse_bool(parameters.get(INCREMENTAL_DETOKENIZE, False), INCREMENTAL_DETOKENIZE)


def _stable(text: str) -> int:
    """Characters of ``text`` that are final: all but a trailing incomplete character."""
    return len(text.rstrip(INCOMPLETE))


class Postprocessor:
    def __init__(self, codec: FastDecoder | TextCodec, max_live_streams: int = MAX_LIVE_STREAMS):
        self.codec = codec
        self.max_live_streams = max_live_streams
        self._streams: OrderedDict[tuple, IncrementalDetokenizer] = OrderedDict()

    def __call__(self, inputs: dict[str, np.ndarray], request_id: str = "",
                 incremental: bool = False) -> dict[str, np.ndarray]:
        return self.batch([(inputs, request_id, incremental)])[0]

    def batch(self, requests: list[tuple[dict[str, np.ndarray], str, bool]]
              ) -> list[dict[str, np.ndarray]]:
        """Several requests (inputs, request id, incremental) at once: every stateless decode
        of the batch goes to the tokenizer in one call."""
        rows = [_rows(inputs) for inputs, _, _ in requests]
        stateless = [(ids, preceding) for rows_of in rows for ids, preceding, _ in rows_of
                     if preceding is not None]
        deltas = iter(self._stateless_deltas(stateless))
        outputs = []
        for (inputs, request_id, incremental), rows_of in zip(requests, rows):
            texts = [next(deltas) if preceding is not None
                     else self._stateful(request_id, incremental, row, ids)
                     for ids, preceding, row in rows_of]
            # 1-D, batch x beams, as the reference postprocessing returns it (np.array of
            # strings): clients read ``text_output[0].decode()``.
            outputs.append({"OUTPUT": np.array([t.encode("utf-8") for t in texts],
                                               dtype=np.object_)})
        return outputs

    def _stateless_deltas(self, rows: list[tuple[list[int], list[int]]]) -> list[str]:
        sequences = []
        for ids, preceding in rows:
            sequences += [preceding, preceding + ids]
        texts = self.codec.decode_many(sequences) if sequences else []
        deltas = []
        for before, after in zip(texts[::2], texts[1::2]):
            start, end = _stable(before), _stable(after)
            deltas.append(after[start:end] if end > start else "")
        return deltas

    def _stateful(self, request_id: str, incremental: bool, row: tuple, ids: list[int]) -> str:
        key = (request_id, *row) if incremental and request_id else None
        if key is None:
            return IncrementalDetokenizer(self.codec).add(ids)
        detok = self._streams.pop(key, None) or IncrementalDetokenizer(self.codec)
        self._streams[key] = detok  # most recently used last
        while len(self._streams) > self.max_live_streams:
            self._streams.popitem(last=False)
        return detok.add(ids)

    @property
    def live_streams(self) -> int:
        return len(self._streams)


def _rows(inputs: dict[str, np.ndarray]) -> list[tuple[list[int], list[int] | None, tuple]]:
    """Per (batch, beam) row: its token ids, its preceding ids (None when the engine sent none)
    and its (batch, beam) position."""
    tokens = np.asarray(inputs["TOKENS_BATCH"])  # [batch, beam, len]
    lengths = np.asarray(inputs["SEQUENCE_LENGTH"]).reshape(tokens.shape[:2])
    preceding = inputs.get("PRECEDING_IDS")
    if preceding is not None:
        preceding = np.asarray(preceding).reshape(*tokens.shape[:2], -1)
    rows = []
    for b in range(tokens.shape[0]):
        for beam in range(tokens.shape[1]):
            ids = tokens[b, beam, : lengths[b, beam]].tolist()
            before = None if preceding is None else preceding[b, beam].tolist()
            rows.append((ids, before, (b, beam)))
    return rows
