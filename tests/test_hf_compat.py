"""Files written by transformers 5 (the CPU set) load under 4.56.0 (the GPU image's set), and the
portable forms we write still load under 5. This file runs under both sets (`make test`,
`make test-gpuset`); each run checks its own side against files as transformers 5.24 wrote them."""

from __future__ import annotations

import json
import shutil

import pytest
from tokenizers import Tokenizer

from tritonllm.hf_compat import (llama_rope_kwargs, load_tokenizer, portable_model_config,
                                 portable_tokenizer_config, rope_theta_of,
                                 write_portable_checkpoint)

# tokenizer_config.json and config.json's RoPE keys exactly as transformers 5.24 saved them for
# the default model (before hf_compat existed).
V5_TOKENIZER_CONFIG = {
    "backend": "tokenizers", "bos_token": "<|im_start|>", "eos_token": "<|im_end|>",
    "is_local": True, "local_files_only": False, "model_max_length": 10**30,
    "pad_token": "<|im_end|>", "tokenizer_class": "TokenizersBackend",
    "unk_token": "<|endoftext|>"}
V5_ROPE = {"rope_parameters": {"rope_theta": 100000.0, "rope_type": "default"}}
TEXT = "Hello world, what is the capital of France? 🤗 é 中文"


@pytest.fixture()
def v5_dir(tmp_path, model_dir):
    """The default model's tokenizer and config, with the files transformers 5 writes."""
    for name in ("tokenizer.json", "chat_template.jinja"):
        shutil.copy(model_dir / name, tmp_path)
    config = json.loads((model_dir / "config.json").read_text())
    config.pop("rope_theta", None)
    (tmp_path / "config.json").write_text(json.dumps({**config, **V5_ROPE}))
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(V5_TOKENIZER_CONFIG))
    return tmp_path


def assert_same_tokenizer(tokenizer, model_dir):
    reference = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    assert tokenizer.encode(TEXT) == reference.encode(TEXT).ids
    assert (tokenizer.eos_token_id, tokenizer.pad_token_id, tokenizer.bos_token_id) == (2, 2, 1)
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "hi"}],
                                           add_generation_prompt=True, tokenize=False)
    assert prompt.endswith("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")
    ids = tokenizer.encode(" é 中文 test")
    assert tokenizer.decode(ids, skip_special_tokens=True) == " é 中文 test"


def test_load_tokenizer_reads_a_dir_written_by_transformers_5(v5_dir):
    before = (v5_dir / "tokenizer_config.json").read_text()
    assert_same_tokenizer(load_tokenizer(v5_dir), v5_dir)
    assert (v5_dir / "tokenizer_config.json").read_text() == before  # read-only contract


def test_portable_checkpoint_loads_with_plain_auto_classes(v5_dir):
    """What any reader in the GPU image does (TensorRT-LLM's tools, ModelOpt): no hf_compat."""
    from transformers import AutoConfig, AutoTokenizer

    assert write_portable_checkpoint(v5_dir) is True
    assert write_portable_checkpoint(v5_dir) is False  # idempotent
    assert_same_tokenizer(AutoTokenizer.from_pretrained(v5_dir), v5_dir)
    config = AutoConfig.from_pretrained(v5_dir)
    assert rope_theta_of(config) == 100000.0


def test_default_model_dir_is_portable(model_dir):
    """`make model` wrote (or first use fixed) the cached default model in the portable form."""
    from transformers import AutoConfig, AutoTokenizer

    tokenizer_config = json.loads((model_dir / "tokenizer_config.json").read_text())
    assert portable_tokenizer_config(tokenizer_config) == tokenizer_config
    config = json.loads((model_dir / "config.json").read_text())
    assert portable_model_config(config) == config
    assert_same_tokenizer(AutoTokenizer.from_pretrained(model_dir), model_dir)
    config = AutoConfig.from_pretrained(model_dir)
    assert rope_theta_of(config) == 1e5


def test_extra_special_tokens_list_becomes_additional_special_tokens(v5_dir):
    config = {**V5_TOKENIZER_CONFIG, "extra_special_tokens": ["<tool>", "<x2>"]}
    portable = portable_tokenizer_config(config)
    assert portable["additional_special_tokens"] == ["<tool>", "<x2>"]
    assert "extra_special_tokens" not in portable
    (v5_dir / "tokenizer_config.json").write_text(json.dumps(config))
    tokenizer = load_tokenizer(v5_dir)
    assert {"<tool>", "<x2>"} <= set(tokenizer.all_special_tokens)
    assert len(tokenizer.encode("a<tool>b")) == 3


def test_rope_scaling_is_kept_beside_rope_parameters():
    llama3 = {"rope_type": "llama3", "factor": 8.0, "rope_theta": 500000.0}
    out = portable_model_config({"rope_parameters": llama3})
    assert out["rope_theta"] == 500000.0
    assert out["rope_scaling"] == {"rope_type": "llama3", "factor": 8.0}
    assert out["rope_parameters"] == llama3
    legacy = {"rope_theta": 1e4, "rope_scaling": None}
    assert portable_model_config(legacy) == legacy


@pytest.mark.parametrize("rope", [
    {"rope_type": "default", "rope_theta": 50000.0},
    {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
     "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}])
def test_llama_config_gets_the_rope_under_either_line(rope):
    """The RoPE tables transformers builds from the config use the given base and scaling."""
    import torch
    from transformers import LlamaConfig
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

    config = LlamaConfig(hidden_size=64, num_attention_heads=4, max_position_embeddings=16384,
                         **llama_rope_kwargs(rope))
    inv_freq = LlamaRotaryEmbedding(config).inv_freq
    plain = 1.0 / rope["rope_theta"] ** (torch.arange(0, 16, 2, dtype=torch.float32) / 16)
    if rope["rope_type"] == "default":
        assert torch.allclose(inv_freq, plain)
    else:  # llama3 scaling divides the low frequencies by the factor
        assert torch.allclose(inv_freq[0], plain[0])
        assert torch.allclose(inv_freq[-1], plain[-1] / 8.0)
