"""Preprocessing: prompt text (or chat messages) -> token ids and the engine's word lists.

Inputs and outputs are the ``preprocessing`` model's tensors in :mod:`tritonllm.contract`, one
request at a time, as numpy arrays with the batch dimension first.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tritonllm.tokenizer import InvalidInputError, TextCodec


@dataclass(frozen=True)
class Limits:
    """The engine's limits, checked here so errors name the ensemble's fields."""

    max_input_len: int
    max_seq_len: int

    @classmethod
    def from_parameters(cls, params: dict[str, str]) -> "Limits | None":
        if "max_input_len" not in params or "max_seq_len" not in params:
            return None
        return cls(int(params["max_input_len"]), int(params["max_seq_len"]))


class Preprocessor:
    def __init__(self, codec: TextCodec, limits: Limits | None = None):
        self.codec = codec
        self.limits = limits

    def __call__(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        queries = inputs["QUERY"].reshape(-1)
        output_lens = inputs["REQUEST_OUTPUT_LEN"].reshape(-1)
        if len(queries) != len(output_lens):
            raise InvalidInputError(
                f"max_tokens: {len(output_lens)} values for {len(queries)} prompts")
        rows = [self._row(inputs, i, q, int(n)) for i, (q, n) in enumerate(zip(queries, output_lens))]
        return _stack(rows, self.codec.pad_id)

    def _row(self, inputs: dict, index: int, query, max_tokens: int) -> dict[str, np.ndarray]:
        chat = bool(_row_value(inputs, "APPLY_CHAT_TEMPLATE", index, False))
        ids = self._encode(query, chat)
        self._check_lengths(len(ids), max_tokens)
        return {
            "INPUT_ID": np.asarray(ids, dtype=np.int32),
            "REQUEST_INPUT_LEN": np.int32(len(ids)),
            "REQUEST_OUTPUT_LEN": np.int32(max_tokens),
            "BAD_WORDS_IDS": self._words(inputs, "BAD_WORDS_DICT", index, "bad_words"),
            "STOP_WORDS_IDS": self._words(inputs, "STOP_WORDS_DICT", index, "stop_words"),
            "OUT_END_ID": np.int32(_row_value(inputs, "END_ID", index, self.codec.end_id)),
            "OUT_PAD_ID": np.int32(_row_value(inputs, "PAD_ID", index, self.codec.pad_id)),
            # Decoder-only: the reference's encoder-decoder outputs are [pad_id] and 1.
            "DECODER_INPUT_ID": np.asarray([self.codec.pad_id], dtype=np.int32),
            "REQUEST_DECODER_INPUT_LEN": np.int32(1),
        }

    def _encode(self, query, chat: bool) -> list[int]:
        text = decode_utf8(query, "text_input")
        if not text.strip():
            raise InvalidInputError("text_input: the prompt is empty")
        return self.codec.encode_chat(text) if chat else self.codec.encode(text)

    def _check_lengths(self, input_len: int, max_tokens: int) -> None:
        if max_tokens < 1:
            raise InvalidInputError(f"max_tokens: must be >= 1, got {max_tokens}")
        if self.limits is None:
            return
        if input_len > self.limits.max_input_len:
            raise InvalidInputError(
                f"text_input: the prompt is {input_len} tokens, over max_input_len "
                f"({self.limits.max_input_len})")
        if input_len + max_tokens > self.limits.max_seq_len:
            raise InvalidInputError(
                f"max_tokens: prompt ({input_len} tokens) + max_tokens ({max_tokens}) is over "
                f"max_seq_len ({self.limits.max_seq_len}); ask for at most "
                f"{self.limits.max_seq_len - input_len} tokens")

    def _words(self, inputs: dict, name: str, index: int, field: str) -> np.ndarray:
        words = inputs.get(name)
        if words is None:
            return self.codec.words_to_list([], field)
        row = np.asarray(words)[index] if np.asarray(words).ndim > 1 else np.asarray(words)
        texts = [decode_utf8(w, field) for w in row.reshape(-1)]
        return self.codec.words_to_list([t for t in texts if t != ""], field)


def decode_utf8(value, field: str) -> str:
    if isinstance(value, str):
        return value
    try:
        return bytes(value).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInputError(f"{field}: not valid UTF-8 ({exc.reason} at byte {exc.start})") \
            from None


def _row_value(inputs: dict, name: str, index: int, default):
    value = inputs.get(name)
    if value is None:
        return default
    flat = np.asarray(value).reshape(-1)
    return flat[index] if len(flat) > index else flat[0]


def _stack(rows: list[dict[str, np.ndarray]], pad_id: int) -> dict[str, np.ndarray]:
    """Stack per-row outputs into batch arrays, padding ragged ones (ids with pad_id)."""
    out = {}
    for name in rows[0]:
        values = [np.asarray(r[name]) for r in rows]
        if values[0].ndim == 0:
            out[name] = np.stack(values).reshape(len(rows), 1)
        else:
            fill = pad_id if name == "INPUT_ID" else (0 if values[0].ndim == 1 else None)
            out[name] = _pad_stack(values, fill)
    return out


def _pad_stack(values: list[np.ndarray], fill) -> np.ndarray:
    width = max(v.shape[-1] for v in values)
    padded = []
    for v in values:
        if v.ndim == 2:  # [2, L] word list: ids padded with 0, offsets with -1
            p = np.zeros((2, width), dtype=np.int32)
            p[1, :] = -1
            p[:, : v.shape[1]] = v
        else:
            p = np.full(width, fill, dtype=v.dtype)
            p[: len(v)] = v
        padded.append(p)
    return np.stack(padded)
