"""One tokenizer module for preprocessing, postprocessing, the engine, clients and load tests.

``TextCodec`` wraps a Hugging Face tokenizer with what serving needs: prompts and chat messages
to ids, stop/bad words to TensorRT-LLM's ``[2, L]`` word-list format, and end/pad id defaults.
``IncrementalDetokenizer`` turns a stream of token ids into text deltas whose concatenation equals
decoding all ids at once: leading spaces survive and characters that span several tokens (emoji,
CJK) are held back until complete. Stateless per-chunk decoding gets both wrong.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tritonllm.tool_calls import messages_for_plain_template, template_knows_tools

# A word list with more entries than this is refused (a request carrying thousands of stop
# words would otherwise cost a token-sequence match per word per step).
MAX_WORDS = 32  # each word is matched in up to 2 spellings; the engine takes 64 sequences
MAX_WORD_TOKENS = 64


class InvalidInputError(ValueError):
    """A request field is invalid; the message names the field and the limit."""


def load_tokenizer(model_dir: str | Path):
    """``model_dir``'s Hugging Face tokenizer under transformers 5 or 4.56.0 (the GPU image's),
    whichever of them wrote it (see :mod:`tritonllm.hf_compat`)."""
    from tritonllm.hf_compat import load_tokenizer as load

    return load(model_dir)


@dataclass
class TextCodec:
    """Text <-> token ids for one model."""

    tokenizer: object

    @classmethod
    def from_dir(cls, model_dir: str | Path) -> "TextCodec":
        return cls(load_tokenizer(model_dir))

    @property
    def end_id(self) -> int:
        return int(self.tokenizer.eos_token_id)

    @property
    def pad_id(self) -> int:
        pad = self.tokenizer.pad_token_id
        return self.end_id if pad is None else int(pad)

    def encode(self, text: str) -> list[int]:
        """Prompt text to ids, with the tokenizer's own special-token policy (BOS for Llama)."""
        return list(self.tokenizer.encode(text))

    def encode_chat(self, messages_json: str) -> list[int]:
        """Chat messages (and tools; see :func:`parse_messages`), rendered with the chat
        template; a template that does not know tools gets them as text
        (:mod:`tritonllm.tool_calls`)."""
        messages, tools = parse_messages(messages_json)
        template = getattr(self.tokenizer, "chat_template", None)
        if not template:
            raise InvalidInputError(
                "apply_chat_template: this model's tokenizer has no chat template")
        extra = {}
        if template_knows_tools(template):
            extra = {"tools": tools} if tools else {}
        elif tools or any("tool_calls" in m for m in messages):
            messages = messages_for_plain_template(messages, tools)
        ids = self.tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, tokenize=True, return_dict=False, **extra)
        return list(ids)

    def decode(self, ids: list[int]) -> str:
        # No clean-up of spaces before punctuation: it would make a decoded prefix differ from
        # the same ids decoded with what follows, breaking exact streaming.
        return self.decode_many([ids])[0]

    def decode_many(self, sequences: list[list[int]]) -> list[str]:
        """``decode`` of each sequence. A fast tokenizer's Rust ``tokenizers.Tokenizer`` is
        called directly (the call transformers 5 and 4.56 make themselves, without their Python
        layers: a third of the cost per sequence here), one sequence at a time: its
        ``decode_batch`` hands short sequences to a thread pool and was 4x slower here."""
        rust = self._rust_tokenizer
        if rust is not None:
            return [rust.decode(ids, skip_special_tokens=True) for ids in sequences]
        return [self.tokenizer.decode(ids, skip_special_tokens=True,
                                      clean_up_tokenization_spaces=False) for ids in sequences]

    @functools.cached_property
    def _rust_tokenizer(self):
        rust = getattr(self.tokenizer, "_tokenizer", None)
        return rust if type(rust).__module__.startswith("tokenizers") else None

    def word_variants(self, word: str) -> list[list[int]]:
        """Token sequences that spell ``word`` in generated text.

        A word's ids depend on what precedes it (``"Paris"`` after a space is one token, alone
        another), so both spellings are matched; that is the reference's known miss.
        """
        variants = []
        for text in (word, " " + word):
            ids = self.tokenizer.encode(text, add_special_tokens=False)
            if ids and ids not in variants:
                variants.append(ids)
        return variants

    def words_to_list(self, words: list[str], field: str) -> np.ndarray:
        """Words to TensorRT-LLM's ``[2, L]`` INT32 format (ids; end offsets padded with -1)."""
        if len(words) > MAX_WORDS:
            raise InvalidInputError(
                f"{field}: {len(words)} words given, at most {MAX_WORDS} are accepted")
        sequences = []
        for word in words:
            if not word:
                raise InvalidInputError(f"{field}: empty words are not accepted")
            for ids in self.word_variants(word):
                if len(ids) > MAX_WORD_TOKENS:
                    raise InvalidInputError(
                        f"{field}: a word of {len(ids)} tokens is longer than the limit "
                        f"of {MAX_WORD_TOKENS} tokens")
                sequences.append(ids)
        return to_word_list_format(sequences)


class FastDecoder:
    """Decoding only (what postprocessing needs), straight from ``tokenizer.json`` with the Rust
    ``tokenizers`` library: the same call :meth:`TextCodec.decode` ends in, without loading
    transformers (which imports torch): a postprocessing stub holds 71 MiB instead of ~365 MiB
    here, which is what each extra instance costs."""

    def __init__(self, rust_tokenizer):
        self._rust = rust_tokenizer

    @classmethod
    def from_dir(cls, model_dir: str | Path) -> "FastDecoder | TextCodec":
        """A FastDecoder when ``model_dir`` has a ``tokenizer.json``; else a full TextCodec."""
        path = Path(model_dir) / "tokenizer.json"
        if not path.is_file():
            return TextCodec.from_dir(model_dir)
        from tokenizers import Tokenizer

        return cls(Tokenizer.from_file(str(path)))

    def decode(self, ids: list[int]) -> str:
        return self._rust.decode(ids, skip_special_tokens=True)

    def decode_many(self, sequences: list[list[int]]) -> list[str]:
        return [self._rust.decode(ids, skip_special_tokens=True) for ids in sequences]


def parse_messages(messages_json: str) -> tuple[list[dict], list[dict]]:
    """``text_input`` with ``apply_chat_template``: a JSON array of messages, or an object
    ``{"messages": [...], "tools": [...]}`` (OpenAI ``function`` tools). A message has a string
    ``role`` and ``content``; an assistant message may carry ``tool_calls`` instead of content,
    a ``tool`` message its ``tool_call_id``. Returns ``(messages, tools)``."""
    try:
        value = json.loads(messages_json)
    except json.JSONDecodeError as exc:
        raise InvalidInputError(
            f"text_input: with apply_chat_template it must be a JSON array of messages ({exc})"
        ) from None
    tools = []
    if isinstance(value, dict):
        messages, tools = value.get("messages"), value.get("tools") or []
        if not isinstance(tools, list) or not all(_is_tool(t) for t in tools):
            raise InvalidInputError('text_input: "tools" must be a list of {"type": "function", '
                                    '"function": {"name": ...}} objects')
    else:
        messages = value
    if not (isinstance(messages, list) and messages and all(map(_is_message, messages))):
        raise InvalidInputError(
            'text_input: with apply_chat_template it must be a non-empty JSON array of '
            '{"role": str, "content": str} objects')
    return messages, tools


def _is_message(m) -> bool:
    if not isinstance(m, dict) or not isinstance(m.get("role"), str):
        return False
    if isinstance(m.get("tool_calls"), list) and m["tool_calls"]:
        return m.get("content") is None or isinstance(m.get("content"), str)
    return isinstance(m.get("content"), str)


def _is_tool(t) -> bool:
    return (isinstance(t, dict) and isinstance(t.get("function"), dict)
            and isinstance(t["function"].get("name"), str))


def to_word_list_format(sequences: list[list[int]]) -> np.ndarray:
    """``[[5, 6], [7]]`` -> ``[[5, 6, 7], [2, 3, -1]]``; no words -> ``[[0], [-1]]``."""
    flat = [tok for seq in sequences for tok in seq]
    offsets = np.cumsum([len(seq) for seq in sequences]).tolist()
    width = max(len(flat), 1)
    out = np.zeros((2, width), dtype=np.int32)
    out[1, :] = -1
    out[0, : len(flat)] = flat
    out[1, : len(offsets)] = offsets
    return out


def from_word_list_format(word_list: np.ndarray) -> list[list[int]]:
    """Inverse of :func:`to_word_list_format`; raises InvalidInputError on a malformed list."""
    arr = np.asarray(word_list)
    if arr.ndim != 2 or arr.shape[0] != 2:
        raise InvalidInputError(f"word list: expected shape [2, L], got {list(arr.shape)}")
    ids, offsets = arr[0].tolist(), [int(o) for o in arr[1].tolist() if o >= 0]
    words, start = [], 0
    for end in offsets:
        if end <= start or end > len(ids):
            raise InvalidInputError(f"word list: offset {end} out of order or past {len(ids)}")
        words.append(ids[start:end])
        start = end
    return words


class IncrementalDetokenizer:
    """Token ids in, text deltas out, exact under concatenation.

    Decodes a sliding window of recent ids and counts the characters of that window already
    emitted, so each ``add`` costs O(window), not O(sequence). Text ending in an incomplete
    character (U+FFFD from a partial UTF-8 sequence) is held back until the character completes.
    The window slides only when nothing is held back, so emitted text never changes.

    Non-streamed text is ``IncrementalDetokenizer(codec).add(all_ids)``: the same rule, so a
    response cut mid-character ends before that character in both modes.
    """

    _WINDOW = 8  # tokens of left context kept so spacing decodes as it does in context

    def __init__(self, codec: TextCodec):
        self._codec = codec
        self._ids: list[int] = []
        self._start = 0  # first id of the decode window
        self._emitted = 0  # characters of decode(ids[start:]) already returned

    def add(self, new_ids: list[int]) -> str:
        self._ids.extend(new_ids)
        text = self._codec.decode(self._ids[self._start:])
        stable = len(text.rstrip("\ufffd"))
        if stable <= self._emitted:
            return ""
        delta = text[self._emitted:stable]
        self._emitted = stable
        if stable == len(text):
            self._slide()
        return delta

    def flush(self) -> str:
        """Whatever is still held back (an incomplete character at the very end)."""
        text = self._codec.decode(self._ids[self._start:])
        delta, self._emitted = text[self._emitted:], len(text)
        return delta

    def _slide(self) -> None:
        start = max(self._start, len(self._ids) - self._WINDOW)
        if start != self._start:
            self._start = start
            self._emitted = len(self._codec.decode(self._ids[start:]))
