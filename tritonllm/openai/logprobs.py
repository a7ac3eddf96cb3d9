"""Token log probabilities in OpenAI's two shapes, with each token's text and bytes.

Chat (``choices[i].logprobs``)::

    {"content": [{"token", "logprob", "bytes", "top_logprobs": [{"token", "logprob", "bytes"}]}],
     "refusal": null}

Completions (the legacy shape)::

    {"tokens": [...], "token_logprobs": [...], "top_logprobs": [{token: logprob}, ...] | null,
     "text_offset": [...]}

A token's ``bytes`` are the bytes it stands for; its ``token`` is those bytes as text when they
are valid UTF-8 alone, else the tokenizer's decoding of the token (with U+FFFD where a character
is cut), so the chat ``bytes`` of consecutive tokens always join into the exact UTF-8 text.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

_BYTE_FALLBACK = re.compile(r"^<0x([0-9A-Fa-f]{2})>$")  # SentencePiece's byte tokens


@dataclass(frozen=True)
class TokenLogprob:
    """One generated token: its id, log probability and the alternatives the client asked
    for, ``(token_id, log_prob)`` most likely first."""

    token_id: int
    logprob: float
    top: tuple[tuple[int, float], ...] = ()


class TokenTexts:
    """Token id -> (text, bytes), from the model's ``tokenizer.json`` (Rust ``tokenizers``:
    no transformers import in the frontend)."""

    def __init__(self, tokenizer_dir: str | Path) -> None:
        from tokenizers import Tokenizer

        path = Path(tokenizer_dir) / "tokenizer.json"
        self._tokenizer = Tokenizer.from_file(str(path))
        decoder = json.loads(path.read_text()).get("decoder") or {}
        self._byte_level = "ByteLevel" in json.dumps(decoder)
        self._unicode_to_byte = {c: b for b, c in _bytes_to_unicode().items()}
        self.of = lru_cache(maxsize=1 << 16)(self._of)

    def _of(self, token_id: int) -> tuple[str, tuple[int, ...]]:
        raw = self._tokenizer.id_to_token(token_id)
        data = self._bytes(raw, token_id) if raw is not None else b""
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            text = self._tokenizer.decode([token_id], skip_special_tokens=False)
        return text, tuple(data)

    def _bytes(self, raw: str, token_id: int) -> bytes:
        if self._byte_level and all(c in self._unicode_to_byte for c in raw):
            return bytes(self._unicode_to_byte[c] for c in raw)
        match = _BYTE_FALLBACK.match(raw)
        if match:
            return bytes([int(match.group(1), 16)])
        if raw.startswith("\u2581"):  # SentencePiece's word-start mark is a space
            return (" " + raw[1:]).encode("utf-8")
        return self._tokenizer.decode([token_id], skip_special_tokens=False).encode("utf-8")


def chat_logprobs(tokens: list[TokenLogprob], texts: TokenTexts) -> dict:
    def entry(token_id: int, logprob: float) -> dict:
        text, data = texts.of(token_id)
        return {"token": text, "logprob": logprob, "bytes": list(data)}

    return {"content": [{**entry(t.token_id, t.logprob),
                         "top_logprobs": [entry(i, p) for i, p in t.top]} for t in tokens],
            "refusal": None}


def completion_logprobs(tokens: list[TokenLogprob], texts: TokenTexts, k: int,
                        offset: int = 0) -> dict:
    """``offset``: where the first token's text starts in the choice's text."""
    words, offsets = [], []
    for t in tokens:
        offsets.append(offset)
        words.append(texts.of(t.token_id)[0])
        offset += len(words[-1])
    top = [{texts.of(i)[0]: p for i, p in t.top} for t in tokens] if k else None
    return {"tokens": words, "token_logprobs": [t.logprob for t in tokens],
            "top_logprobs": top, "text_offset": offsets}


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte-level alphabet: each byte as a printable character (the printable Latin-1
    bytes as themselves, the rest shifted past U+0100), as byte-level BPE vocabularies spell
    tokens."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
                 *range(ord("®"), ord("ÿ") + 1)]
    mapping, shift = {}, 0
    for byte in range(256):
        if byte in printable:
            mapping[byte] = chr(byte)
        else:
            mapping[byte] = chr(256 + shift)
            shift += 1
    return mapping
