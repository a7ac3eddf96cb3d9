"""Pre/postprocessing logic as the Triton adapters call it: numpy in, numpy out."""

from __future__ import annotations

import numpy as np
import pytest

from tritonllm.models.postprocess import Postprocessor, wants_incremental
from tritonllm.models.preprocess import Limits, Preprocessor
from tritonllm.tokenizer import InvalidInputError, TextCodec, from_word_list_format


@pytest.fixture(scope="module")
def codec(model_dir):
    return TextCodec.from_dir(model_dir)


def query(*texts: str, max_tokens: int = 8, **extra) -> dict:
    inputs = {"QUERY": np.array([[t.encode()] for t in texts], dtype=np.object_),
              "REQUEST_OUTPUT_LEN": np.array([[max_tokens]] * len(texts), dtype=np.int32)}
    return {**inputs, **extra}


def test_prompt_to_ids_and_defaults(codec):
    out = Preprocessor(codec)(query("Hello world"))
    ids = codec.encode("Hello world")
    assert out["INPUT_ID"].tolist() == [ids]
    assert out["REQUEST_INPUT_LEN"].tolist() == [[len(ids)]]
    assert out["REQUEST_OUTPUT_LEN"].tolist() == [[8]]
    assert out["OUT_END_ID"].tolist() == [[codec.end_id]]
    assert out["STOP_WORDS_IDS"].shape == (1, 2, 1) and out["STOP_WORDS_IDS"][0, 1, 0] == -1
    assert out["INPUT_ID"].dtype == np.int32


def test_batch_rows_are_padded_with_pad_id(codec):
    out = Preprocessor(codec)(query("Hi", "A much longer prompt than the first"))
    short, long_ = codec.encode("Hi"), codec.encode("A much longer prompt than the first")
    assert out["INPUT_ID"].shape == (2, len(long_))
    assert out["INPUT_ID"][0, len(short):].tolist() == [codec.pad_id] * (len(long_) - len(short))
    assert out["REQUEST_INPUT_LEN"].reshape(-1).tolist() == [len(short), len(long_)]


def test_stop_words_and_explicit_end_id(codec):
    stop = np.array([[b"Paris", b"\n"]], dtype=np.object_)
    out = Preprocessor(codec)(query("x", STOP_WORDS_DICT=stop,
                                    END_ID=np.array([[7]], dtype=np.int32)))
    words = from_word_list_format(out["STOP_WORDS_IDS"][0])
    assert codec.word_variants("Paris")[0] in words
    assert out["OUT_END_ID"].tolist() == [[7]]


@pytest.mark.parametrize("inputs, message", [
    (query("   "), "text_input: the prompt is empty"),
    (query("hi", max_tokens=0), "max_tokens: must be >= 1, got 0"),
    (query("word " * 50), "text_input: the prompt is .* over max_input_len \\(16\\)"),
    (query("hi", max_tokens=40), "max_tokens: prompt .* over max_seq_len \\(32\\)"),
    ({"QUERY": np.array([[b"\xff\xfe"]], dtype=np.object_),
      "REQUEST_OUTPUT_LEN": np.array([[4]], dtype=np.int32)}, "text_input: not valid UTF-8"),
])
def test_bad_requests_name_the_field_and_limit(codec, inputs, message):
    with pytest.raises(InvalidInputError, match=message):
        Preprocessor(codec, Limits(max_input_len=16, max_seq_len=32))(inputs)


def test_limits_come_from_model_parameters():
    assert Limits.from_parameters({"max_input_len": "16", "max_seq_len": "32"}) == Limits(16, 32)
    assert Limits.from_parameters({}) is None


def tokens(ids: list[int]) -> dict:
    return {"TOKENS_BATCH": np.array([[ids]], dtype=np.int32),
            "SEQUENCE_LENGTH": np.array([[len(ids)]], dtype=np.int32)}


def test_postprocessing_streams_exactly_per_request(codec):
    post = Postprocessor(codec)
    ids = codec.tokenizer.encode(" 你好 🎉 world", add_special_tokens=False)
    chunks = [post(tokens([i]), "req-1", incremental=True)["OUTPUT"][0].decode() for i in ids]
    whole = post(tokens(ids))["OUTPUT"][0].decode()
    assert "".join(chunks) == whole == " 你好 🎉 world"
    assert post.live_streams == 1


def test_postprocessing_keeps_streams_apart_and_bounded(codec):
    post = Postprocessor(codec, max_live_streams=2)
    a, b = codec.tokenizer.encode(" one two", add_special_tokens=False), \
        codec.tokenizer.encode(" three four", add_special_tokens=False)
    out = {rid: "" for rid in ("a", "b")}
    for x, y in zip(a, b):
        out["a"] += post(tokens([x]), "a", True)["OUTPUT"][0].decode()
        out["b"] += post(tokens([y]), "b", True)["OUTPUT"][0].decode()
    assert out == {"a": " one two", "b": " three four"}
    post(tokens([a[0]]), "c", True)
    assert post.live_streams == 2


def test_sequence_length_trims_padding(codec):
    ids = codec.tokenizer.encode("Hello", add_special_tokens=False)
    inputs = {"TOKENS_BATCH": np.array([[ids + [0, 0, 0]]], dtype=np.int32),
              "SEQUENCE_LENGTH": np.array([[len(ids)]], dtype=np.int32)}
    assert Postprocessor(codec)(inputs)["OUTPUT"][0] == b"Hello"


def test_incremental_parameter_parsing():
    assert wants_incremental({"incremental_detokenize": True})
    assert wants_incremental({"incremental_detokenize": "true"})
    assert not wants_incremental({"incremental_detokenize": False})
    assert not wants_incremental({})
    with pytest.raises(ValueError, match="incremental_detokenize: expected true or false"):
        wants_incremental({"incremental_detokenize": "yes"})


def test_output_is_one_dimensional_batch_times_beams(codec):
    # tensorrtllm_backend's postprocessing returns np.array(list of strings): clients read
    # text_output[0].decode().
    ids = codec.tokenizer.encode("Hi", add_special_tokens=False)
    inputs = {"TOKENS_BATCH": np.array([[ids], [ids]], dtype=np.int32),
              "SEQUENCE_LENGTH": np.array([[len(ids)], [len(ids)]], dtype=np.int32)}
    out = Postprocessor(codec)(inputs)["OUTPUT"]
    assert out.shape == (2,) and out[0].decode() == "Hi"


# --- stateless streaming: preceding_ids, any instance, batched --------------------------------

EXACT_TEXT = " Hello, 你好 🎉 naïve café — 👩‍💻 東京  two  spaces."


def streamed_requests(codec, text: str, interval: int) -> list[dict]:
    """The postprocessing inputs the engine step sends for ``text``'s ids, ``interval`` tokens
    per response (first token alone), each with its preceding ids (the real StreamShaper)."""
    from tritonllm.engine import GenerationOutput
    from tritonllm.models.engine_step import StreamShaper

    ids = codec.tokenizer.encode(text, add_special_tokens=False)
    shaper, requests = StreamShaper(interval), []
    for i, token in enumerate(ids):
        ready = shaper.shape(GenerationOutput("r", [token], finished=i == len(ids) - 1))
        if ready is not None:
            requests.append({**tokens(ready.token_ids),
                             "PRECEDING_IDS": np.array([[shaper.preceding]],
                                                       dtype=np.int32).reshape(1, 1, -1)})
    return requests


@pytest.mark.parametrize("interval", [1, 2, 3])
def test_stateless_deltas_are_exact_whichever_instance_decodes_them(codec, interval):
    instances = [Postprocessor(codec), Postprocessor(codec)]
    chunks = [instances[i % 2](inputs)["OUTPUT"][0].decode()
              for i, inputs in enumerate(streamed_requests(codec, EXACT_TEXT, interval))]
    ids = codec.tokenizer.encode(EXACT_TEXT, add_special_tokens=False)
    assert "".join(chunks) == Postprocessor(codec)(tokens(ids))["OUTPUT"][0].decode() == EXACT_TEXT
    assert all(p.live_streams == 0 for p in instances)  # nothing kept between responses


def test_a_batch_of_interleaved_streams_decodes_each_exactly(codec):
    texts = [EXACT_TEXT, " 日本語のテキスト 🍣", " plain words only"]
    streams = [streamed_requests(codec, t, 1) for t in texts]
    post, out = Postprocessor(codec), ["", "", ""]
    for step in range(max(len(s) for s in streams)):
        live = [(k, s[step]) for k, s in enumerate(streams) if step < len(s)]
        results = post.batch([(inputs, "", False) for _, inputs in live])
        for (k, _), result in zip(live, results):
            out[k] += result["OUTPUT"][0].decode()
    assert out == texts


def test_fast_decoder_decodes_as_the_codec(codec, model_dir):
    from tritonllm.tokenizer import FastDecoder

    fast = FastDecoder.from_dir(model_dir)
    assert isinstance(fast, FastDecoder)
    samples = [[i] for i in range(0, len(codec.tokenizer), 97)]
    samples += [codec.tokenizer.encode(EXACT_TEXT), [codec.end_id, 28, codec.pad_id]]
    assert fast.decode_many(samples) == [codec.decode(ids) for ids in samples]
