"""Fixtures for the build tests: a tiny random Llama (for tp/pp layouts SmolLM2's 9 heads
cannot split) and exported checkpoints shared by several tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tritonllm.build.profile import from_dict
from tritonllm.build.quantization.quantize import quantize

# 8 heads / 4 KV heads / 4 layers / vocab 512: tp 1, 2, 4 and pp 1, 2, 4 all divide it.
TINY = dict(vocab_size=512, hidden_size=128, intermediate_size=256, num_hidden_layers=4,
            num_attention_heads=8, num_key_value_heads=4, head_dim=16,
            max_position_embeddings=256, rope_theta=50000.0,  # a key both transformers lines read
            tie_word_embeddings=False, bos_token_id=1, eos_token_id=2)


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory) -> Path:
    """A randomly initialised (seeded) LlamaForCausalLM saved as fp32 safetensors."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(**TINY)).eval()
    path = tmp_path_factory.mktemp("tiny-llama")
    model.save_pretrained(path)
    _tiny_tokenizer().save_pretrained(path)
    return path


def _tiny_tokenizer():
    """A byte-level BPE with the tiny model's 512-token vocabulary, trained on the bundled
    corpus (calibration needs a tokenizer whose ids fit the model)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from tritonllm.build.corpus import CALIBRATION, HELDOUT

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=TINY["vocab_size"], special_tokens=["<unk>", "<s>",
                                                                                 "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator([CALIBRATION, HELDOUT], trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="<unk>",
                                   bos_token="<s>", eos_token="</s>")


def _build_profile(model_dir: Path | str, tp: int = 1, pp: int = 1, dtype: str = "float16",
                   gpu: str = "H100", **quantization):
    """A profile for tests: small calibration so AWQ/SmoothQuant stay quick on 2 cores."""
    q = {"calibration_samples": 2, "calibration_max_len": 64, **quantization}
    return from_dict({"name": "test", "model": {"dir": str(model_dir)}, "dtype": dtype,
                      "quantization": q, "parallel": {"tp_size": tp, "pp_size": pp},
                      "target": {"gpu": gpu}, "limits": {"max_seq_len": 256,
                                                         "max_input_len": 128,
                                                         "max_num_tokens": 256}})


@pytest.fixture(scope="session")
def make_profile():
    """``make_profile(model_dir, tp=1, pp=1, dtype="float16", gpu="H100", **quantization)``."""
    return _build_profile


@pytest.fixture(scope="session")
def export(tmp_path_factory):
    """``export(model_dir, name, **make_profile kwargs)`` -> checkpoint dir (quantize stage)."""
    def run(model_dir: Path, name: str, **kwargs) -> Path:
        profile = _build_profile(model_dir, **kwargs)
        return quantize(profile, tmp_path_factory.mktemp(name) / "checkpoint").checkpoint_dir

    return run
