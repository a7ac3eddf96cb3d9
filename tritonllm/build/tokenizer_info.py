"""The tokenizer-info file that TensorRT-LLM's ``tensorrtllm`` backend needs for guided decoding.

With ``guided_decoding_backend: xgrammar`` the backend opens ``xgrammar_tokenizer_info_path``,
parses it as JSON and reads three keys (TensorRT-LLM ``triton_backend/inflight_batcher_llm/src/
model_instance_state.cc``, ``getGuidedDecodingConfigFromParams``, at commit
c8c6df08bd0ead54cd47f7973e1e425c28a174cd):

- ``encoded_vocab``: list of strings, the tokenizer's vocabulary as written in it (byte-level
  BPE spells a space ``Ġ``), position = token id;
- ``tokenizer_str``: string, the Hugging Face fast tokenizer's JSON (``tokenizer.json``), from
  which xgrammar detects how the vocabulary encodes bytes;
- ``stop_token_ids``: list of integers, the tokens that end a complete guided output.

TensorRT-LLM writes it with ``examples/generate_xgrammar_tokenizer_info.py``
(``tensorrt_llm.llmapi.tokenizer._xgrammar_tokenizer_info``): the vocabulary sorted by id, the
backend tokenizer's ``to_str()``, and ``[eos_token_id]``. This module writes the same from a
tokenizer directory, with transformers only (no TensorRT-LLM needed), at build time.
"""

from __future__ import annotations

import json
from pathlib import Path

TOKENIZER_INFO_FILE = "xgrammar_tokenizer_info.json"


def tokenizer_info(tokenizer_dir: str | Path) -> dict:
    """The three keys the backend reads, for the tokenizer in ``tokenizer_dir``."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError(f"tokenizer_dir: {tokenizer_dir} has no fast tokenizer "
                         "(tokenizer.json), which the backend's guided decoding needs")
    vocab = tokenizer.get_vocab()
    encoded = [token for token, _ in sorted(vocab.items(), key=lambda item: item[1])]
    if [vocab[token] for token in encoded] != list(range(len(encoded))):
        raise ValueError(f"tokenizer_dir: the vocabulary of {tokenizer_dir} has gaps in its ids")
    if tokenizer.eos_token_id is None:
        raise ValueError(f"tokenizer_dir: {tokenizer_dir} names no eos_token")
    return {"encoded_vocab": encoded, "tokenizer_str": tokenizer.backend_tokenizer.to_str(),
            "stop_token_ids": [tokenizer.eos_token_id]}


def write_tokenizer_info(tokenizer_dir: str | Path, out_dir: str | Path) -> Path:
    """Write :data:`TOKENIZER_INFO_FILE` into ``out_dir``; its path."""
    path = Path(out_dir) / TOKENIZER_INFO_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(tokenizer_info(tokenizer_dir), ensure_ascii=False))
    return path
