"""Model architecture numbers: from a checkpoint's ``config.json``, or a small built-in table.

The planner must work before any weights are on disk (no hub downloads here), so the real models
of the shipped profiles carry their numbers in ``KNOWN``. Source for each row: the model's
``config.json`` as published on Hugging Face (meta-llama/Llama-3.1-8B-Instruct,
meta-llama/Llama-3.1-70B-Instruct, meta-llama/Llama-3.2-1B-Instruct,
HuggingFaceTB/SmolLM2-135M-Instruct). When the checkpoint directory exists its ``config.json``
wins and the table is not used.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class ModelArch:
    """The numbers of a Llama-family decoder that sizing and sharding depend on."""

    name: str
    num_layers: int
    hidden_size: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    max_position_embeddings: int
    tie_word_embeddings: bool = False
    rope_theta: float = 10000.0
    rope_scaling: dict | None = field(default=None, hash=False)
    rms_norm_eps: float = 1e-5

    def __post_init__(self) -> None:
        for name in ("num_layers", "hidden_size", "num_heads", "num_kv_heads", "head_dim",
                     "intermediate_size", "vocab_size", "max_position_embeddings"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: must be >= 1, got {getattr(self, name)}")
        if self.num_heads % self.num_kv_heads:
            raise ValueError(f"num_kv_heads: {self.num_kv_heads} must divide num_heads "
                             f"({self.num_heads})")

    @property
    def q_size(self) -> int:
        return self.num_heads * self.head_dim

    @property
    def kv_size(self) -> int:
        return self.num_kv_heads * self.head_dim

    @property
    def linear_params_per_layer(self) -> int:
        """Weights of the quantizable GEMMs of one decoder layer (qkv, o, gate, up, down)."""
        h = self.hidden_size
        attention = h * (self.q_size + 2 * self.kv_size) + self.q_size * h
        return attention + 3 * h * self.intermediate_size

    @property
    def num_params(self) -> int:
        """All parameters as a TensorRT-LLM checkpoint stores them: embedding and lm_head are
        both counted, tied or not (the checkpoint carries an ``lm_head.weight`` either way)."""
        per_layer = self.linear_params_per_layer + 2 * self.hidden_size
        embeddings = 2 * self.vocab_size * self.hidden_size
        return self.num_layers * per_layer + embeddings + self.hidden_size


_LLAMA31_ROPE = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                 "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}

KNOWN: dict[str, ModelArch] = {
    arch.name: arch for arch in (
        ModelArch("llama-3.1-8b", 32, 4096, 32, 8, 128, 14336, 128256, 131072,
                  rope_theta=500000.0, rope_scaling=_LLAMA31_ROPE),
        ModelArch("llama-3.1-70b", 80, 8192, 64, 8, 128, 28672, 128256, 131072,
                  rope_theta=500000.0, rope_scaling=_LLAMA31_ROPE),
        ModelArch("llama-3.2-1b", 16, 2048, 32, 8, 64, 8192, 128256, 131072,
                  tie_word_embeddings=True, rope_theta=500000.0,
                  rope_scaling={**_LLAMA31_ROPE, "factor": 32.0}),
        ModelArch("smollm2-135m", 30, 576, 9, 3, 64, 1536, 49152, 8192,
                  tie_word_embeddings=True, rope_theta=100000.0),
    )
}


def known_names() -> list[str]:
    return sorted(KNOWN)


def get_known(name: str) -> ModelArch:
    try:
        return KNOWN[name.lower()]
    except KeyError:
        raise ValueError(f"model.architecture: unknown {name!r}; known: "
                         f"{', '.join(known_names())}") from None


def from_hf_config(config: dict, name: str = "checkpoint") -> ModelArch:
    """Read a Hugging Face Llama ``config.json`` dict (transformers 4.x or 5.x key layout)."""
    if config.get("model_type") not in ("llama", None):
        raise ValueError(f"model_type: {config.get('model_type')!r} is not a Llama checkpoint")
    heads = config["num_attention_heads"]
    rope = dict(config.get("rope_parameters") or config.get("rope_scaling") or {})
    theta = config.get("rope_theta", rope.pop("rope_theta", 10000.0))
    rope.pop("rope_theta", None)
    scaling = rope if rope.get("rope_type", rope.get("type", "default")) != "default" else None
    return ModelArch(
        name=name, num_layers=config["num_hidden_layers"], hidden_size=config["hidden_size"],
        num_heads=heads, num_kv_heads=config.get("num_key_value_heads", heads),
        head_dim=config.get("head_dim") or config["hidden_size"] // heads,
        intermediate_size=config["intermediate_size"], vocab_size=config["vocab_size"],
        max_position_embeddings=config["max_position_embeddings"],
        tie_word_embeddings=bool(config.get("tie_word_embeddings", False)),
        rope_theta=float(theta), rope_scaling=scaling,
        rms_norm_eps=float(config.get("rms_norm_eps", 1e-5)),
    )


def from_model_dir(path: Path) -> ModelArch:
    return from_hf_config(json.loads((Path(path) / "config.json").read_text()), Path(path).name)
