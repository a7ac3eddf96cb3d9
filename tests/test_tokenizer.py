"""The one tokenizer module, on SmolLM2's real tokenizer."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from tritonllm.tokenizer import (MAX_WORDS, IncrementalDetokenizer, InvalidInputError, TextCodec,
                                 from_word_list_format, to_word_list_format)

TEXTS = [
    "Hello world, 你好世界 🎉🎉 naïve café  double  spaces",
    " leading space and trailing ",
    "日本語のテキスト😀👍🏽 and a family 👨‍👩‍👧 emoji",
    "punctuation , spaced . oddly ! 🚀",
    "def f(x):\n    return x ** 2\n",
]


@pytest.fixture(scope="module")
def codec(model_dir):
    return TextCodec.from_dir(model_dir)


def stream(codec, ids, sizes):
    detok, out, i = IncrementalDetokenizer(codec), [], 0
    for size in sizes:
        out.append(detok.add(ids[i:i + size]))
        i += size
    return out, detok


@pytest.mark.parametrize("text", TEXTS)
def test_streamed_deltas_concatenate_to_the_whole_text(codec, text):
    ids = codec.tokenizer.encode(text, add_special_tokens=False)
    rng = random.Random(text)
    for cut in range(1, len(ids) + 1):  # every prefix: responses end mid-character too
        prefix = ids[:cut]
        sizes = []
        while sum(sizes) < len(prefix):
            sizes.append(rng.randint(1, 3))
        deltas, detok = stream(codec, prefix, sizes)
        whole = IncrementalDetokenizer(codec).add(prefix)
        assert "".join(deltas) == whole
        assert "\ufffd" not in whole
        assert whole + detok.flush() == codec.decode(prefix)


def test_whole_text_is_the_plain_decode_when_complete(codec):
    for text in TEXTS:
        ids = codec.tokenizer.encode(text, add_special_tokens=False)
        assert IncrementalDetokenizer(codec).add(ids) == codec.decode(ids) == text


def test_leading_spaces_are_kept_token_by_token(codec):
    ids = codec.tokenizer.encode("one two three", add_special_tokens=False)
    deltas, _ = stream(codec, ids, [1] * len(ids))
    assert deltas == ["one", " two", " three"]


def test_word_list_format_round_trip():
    words = [[5, 6], [7], [8, 9, 10]]
    encoded = to_word_list_format(words)
    assert encoded.tolist() == [[5, 6, 7, 8, 9, 10], [2, 3, 6, -1, -1, -1]]
    assert encoded.dtype == np.int32
    assert from_word_list_format(encoded) == words
    assert to_word_list_format([]).tolist() == [[0], [-1]]
    assert from_word_list_format(to_word_list_format([])) == []


def test_malformed_word_list_is_refused():
    with pytest.raises(InvalidInputError, match="shape"):
        from_word_list_format(np.zeros((3, 2), dtype=np.int32))
    with pytest.raises(InvalidInputError, match="offset"):
        from_word_list_format(np.array([[1, 2], [5, -1]], dtype=np.int32))


def test_words_match_alone_and_after_a_space(codec):
    variants = codec.word_variants("Paris")
    assert len(variants) == 2
    assert codec.decode(variants[0]) == "Paris" and codec.decode(variants[1]) == " Paris"
    word_list = codec.words_to_list(["Paris", "\n\n"], "stop_words")
    assert len(from_word_list_format(word_list)) >= 3


def test_word_limits_name_the_field(codec):
    with pytest.raises(InvalidInputError, match=f"stop_words: {MAX_WORDS + 1} words .* {MAX_WORDS}"):
        codec.words_to_list(["w"] * (MAX_WORDS + 1), "stop_words")
    with pytest.raises(InvalidInputError, match="bad_words: empty"):
        codec.words_to_list([""], "bad_words")
    with pytest.raises(InvalidInputError, match="tokens is longer"):
        codec.words_to_list(["🎉" * 100], "stop_words")


def test_chat_messages_use_the_template(codec):
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    ids = codec.encode_chat(json.dumps(messages))
    text = codec.tokenizer.decode(ids)
    assert "What is the capital of France?" in text and text.rstrip().endswith("assistant")
    for bad in ("not json", "[]", '[{"role": "user"}]', '{"role": "user", "content": "x"}'):
        with pytest.raises(InvalidInputError, match="text_input"):
            codec.encode_chat(bad)


def test_end_and_pad_defaults(codec):
    assert codec.end_id == codec.tokenizer.eos_token_id == 2
    assert codec.pad_id >= 0
