"""Postprocessing: the engine's token ids -> text.

Non-streaming responses carry every token of the sequence and are decoded whole. A streaming
request sends only its new tokens in each response, so an :class:`IncrementalDetokenizer` per
request keeps the ids seen so far and emits exact text deltas (leading spaces kept, characters
spanning several tokens held back until complete).

Postprocessing cannot see the ensemble's ``stream`` input: Triton refuses an ensemble step whose
inputs come both from the decoupled engine and from elsewhere. So a client asks for exact
streamed text with the request parameter ``incremental_detokenize: true`` and a request id
unique to that request; Triton hands both to every step of the ensemble. The state is keyed by
that id. Without the parameter each response is decoded alone: right for non-streamed responses
and, for streams, the reference's lossy behaviour. Our client and load tests always set both.
Finished streams are not signalled to postprocessing, so the state lives in a bounded LRU.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

from tritonllm.contract import INCREMENTAL_DETOKENIZE, parse_bool
from tritonllm.tokenizer import IncrementalDetokenizer, TextCodec

MAX_LIVE_STREAMS = 4096


def wants_incremental(parameters: dict) -> bool:
    """True when the request parameters ask for exact streamed text (bool or "true")."""
    return parse_bool(parameters.get(INCREMENTAL_DETOKENIZE, False), INCREMENTAL_DETOKENIZE)


class Postprocessor:
    def __init__(self, codec: TextCodec, max_live_streams: int = MAX_LIVE_STREAMS):
        self.codec = codec
        self.max_live_streams = max_live_streams
        self._streams: OrderedDict[tuple, IncrementalDetokenizer] = OrderedDict()

    def __call__(self, inputs: dict[str, np.ndarray], request_id: str = "",
                 incremental: bool = False) -> dict[str, np.ndarray]:
        tokens = np.asarray(inputs["TOKENS_BATCH"])  # [batch, beam, len]
        lengths = np.asarray(inputs["SEQUENCE_LENGTH"]).reshape(tokens.shape[:2])
        texts = np.empty(tokens.shape[:2], dtype=np.object_)
        for b in range(tokens.shape[0]):
            for beam in range(tokens.shape[1]):
                ids = tokens[b, beam, : lengths[b, beam]].tolist()
                key = (request_id, b, beam) if incremental and request_id else None
                texts[b, beam] = self._text(key, ids).encode("utf-8")
        # 1-D, batch x beams, as the reference postprocessing returns it (np.array of strings):
        # clients read ``text_output[0].decode()``.
        return {"OUTPUT": texts.reshape(-1)}

    def _text(self, key: tuple | None, ids: list[int]) -> str:
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
