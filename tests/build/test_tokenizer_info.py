"""The tokenizer-info file for the GPU backend's guided decoding: the keys and types that
TensorRT-LLM's model_instance_state.cc reads, and enough for xgrammar to rebuild the tokenizer
exactly as it does from the tokenizer itself."""

import json

import pytest

from tritonllm.build.tokenizer_info import TOKENIZER_INFO_FILE, write_tokenizer_info


def test_the_file_holds_what_the_backend_reads(model_dir, tmp_path):
    path = write_tokenizer_info(model_dir, tmp_path / "engine")
    assert path == tmp_path / "engine" / TOKENIZER_INFO_FILE
    info = json.loads(path.read_text())
    # model_instance_state.cc: encoded_vocab -> vector<string>, tokenizer_str -> string,
    # stop_token_ids -> vector<TokenIdType>
    assert set(info) == {"encoded_vocab", "tokenizer_str", "stop_token_ids"}
    assert all(isinstance(t, str) for t in info["encoded_vocab"])
    assert isinstance(info["tokenizer_str"], str)
    assert info["stop_token_ids"] == [2]  # SmolLM2-Instruct's <|im_end|>
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    vocab = tokenizer.get_vocab()
    assert len(info["encoded_vocab"]) == len(vocab)
    assert all(vocab[token] == i for i, token in enumerate(info["encoded_vocab"]))
    assert json.loads(info["tokenizer_str"])["model"]["type"] == "BPE"


def test_xgrammar_rebuilds_the_same_tokenizer_from_the_file(model_dir, tmp_path):
    xgr = pytest.importorskip("xgrammar")
    info = json.loads(write_tokenizer_info(model_dir, tmp_path).read_text())
    from transformers import AutoTokenizer

    direct = xgr.TokenizerInfo.from_huggingface(AutoTokenizer.from_pretrained(str(model_dir)))
    metadata = xgr.TokenizerInfo._detect_metadata_from_hf(info["tokenizer_str"])
    metadata = {"vocab_type": metadata["vocab_type"].value,
                "vocab_size": len(info["encoded_vocab"]),
                "add_prefix_space": metadata["add_prefix_space"],
                "stop_token_ids": info["stop_token_ids"]}
    rebuilt = xgr.TokenizerInfo.from_vocab_and_metadata(info["encoded_vocab"],
                                                        json.dumps(metadata))
    assert rebuilt.vocab_type == direct.vocab_type
    assert rebuilt.decoded_vocab == direct.decoded_vocab
