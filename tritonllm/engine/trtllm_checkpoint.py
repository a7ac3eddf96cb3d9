"""Read a full-precision TensorRT-LLM Llama checkpoint back into Hugging Face Llama tensors.

An independent check of an export's layout: if the CPU engine (or transformers) serving the
converted tensors produces the source model's greedy output, the fused QKV order, the TP split
of every tensor, the PP layer numbering and the names are all right.

Layout undone here (see ``trtllm_layout``): rank ``r`` = ``pp_rank * tp_size + tp_rank``; each
pipeline stage holds ``num_layers / pp_size`` layers numbered from 0; per tp rank,
``attention.qkv`` stacks that rank's q rows, then its k rows, then its v rows;
``attention.dense`` and ``mlp.proj`` are split along their input (columns), ``mlp.fc``
(gate_proj), ``mlp.gate`` (up_proj), the embedding and ``lm_head`` along their rows (vocab
padded to a multiple of tp_size); norms are replicated. Only unquantized weights convert
(quant_algo None, or W8A16/W4A16 whose weights TensorRT-LLM quantizes at build time).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path

import torch
from safetensors import safe_open

FULL_PRECISION_ALGOS = (None, "W8A16", "W4A16")
# TensorRT-LLM per-layer name -> (Hugging Face per-layer name, TP split dim or None).
LAYER_NAMES = {
    "input_layernorm.weight": ("input_layernorm.weight", None),
    "post_layernorm.weight": ("post_attention_layernorm.weight", None),
    "attention.dense.weight": ("self_attn.o_proj.weight", 1),
    "mlp.fc.weight": ("mlp.gate_proj.weight", 0),
    "mlp.gate.weight": ("mlp.up_proj.weight", 0),
    "mlp.proj.weight": ("mlp.down_proj.weight", 1),
}


def read_config(ckpt_dir: str | Path) -> dict:
    return json.loads((Path(ckpt_dir) / "config.json").read_text())


class RankFile(Mapping):
    """One ``rank<N>.safetensors``, read tensor by tensor (a 70B rank never sits in memory
    whole). ``spec(name)`` gives ``(shape, dtype name)`` without reading the data."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file = safe_open(str(path), "pt")
        self._names = list(self._file.keys())

    def __getitem__(self, name: str) -> torch.Tensor:
        if name not in self._names:
            raise KeyError(f"{self.path.name}: no tensor {name!r}")
        return self._file.get_tensor(name)

    def __iter__(self):
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)

    def spec(self, name: str) -> tuple[tuple[int, ...], str]:
        view = self._file.get_slice(name)
        return tuple(view.get_shape()), SAFETENSORS_DTYPES.get(view.get_dtype(),
                                                               view.get_dtype())


SAFETENSORS_DTYPES = {"F16": "float16", "BF16": "bfloat16", "F32": "float32", "I8": "int8",
                      "U8": "uint8", "F8_E4M3": "float8_e4m3fn", "I32": "int32", "I64": "int64"}


def open_ranks(ckpt_dir: str | Path, config: dict) -> list[RankFile]:
    world = config["mapping"]["world_size"]
    paths = [Path(ckpt_dir) / f"rank{r}.safetensors" for r in range(world)]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"checkpoint {ckpt_dir}: missing {', '.join(missing)}")
    return [RankFile(p) for p in paths]


def iter_hf_tensors(config: dict, ranks: list[Mapping[str, torch.Tensor]]
                    ) -> Iterator[tuple[str, torch.Tensor]]:
    """``(Hugging Face LlamaForCausalLM name, tensor)`` pairs, one layer at a time; dtype as
    stored. ``ranks[r]`` maps rank ``r``'s tensor names to tensors."""
    algo = (config.get("quantization") or {}).get("quant_algo")
    if algo not in FULL_PRECISION_ALGOS:
        raise ValueError(f"quantization.quant_algo: {algo} checkpoints hold quantized weights; "
                         "only full-precision checkpoints convert back")
    tp, pp = config["mapping"]["tp_size"], config["mapping"]["pp_size"]
    grid = [[ranks[p * tp + t] for t in range(tp)] for p in range(pp)]
    per_stage = config["num_hidden_layers"] // pp
    yield from _ends(config, grid).items()
    for p, stage in enumerate(grid):
        for local in range(per_stage):
            yield from _layer(config, stage, local, p * per_stage + local).items()


def to_hf_state_dict(config: dict, ranks: list[Mapping[str, torch.Tensor]]
                     ) -> dict[str, torch.Tensor]:
    """All of ``iter_hf_tensors`` in one dict."""
    return dict(iter_hf_tensors(config, ranks))


def to_hf_config(config: dict, **overrides):
    """A transformers ``LlamaConfig`` equal to the checkpoint's model (rope included)."""
    from transformers import LlamaConfig

    from tritonllm.hf_compat import llama_rope_kwargs

    rope = {"rope_type": "default", **(config.get("rotary_scaling") or {}),
            "rope_theta": float(config.get("rotary_base", 10000.0))}
    if "type" in rope:
        rope["rope_type"] = rope.pop("type")
    heads = config["num_attention_heads"]
    return LlamaConfig(
        vocab_size=config["vocab_size"], hidden_size=config["hidden_size"],
        intermediate_size=config["intermediate_size"],
        num_hidden_layers=config["num_hidden_layers"], num_attention_heads=heads,
        num_key_value_heads=config["num_key_value_heads"],
        head_dim=config.get("head_size") or config["hidden_size"] // heads,
        max_position_embeddings=config["max_position_embeddings"],
        rms_norm_eps=config["norm_epsilon"], hidden_act=config["hidden_act"],
        **llama_rope_kwargs(rope), tie_word_embeddings=False,
        attention_bias=bool(config.get("attn_bias", config.get("bias", False))),
        mlp_bias=bool(config.get("mlp_bias", False)), **overrides)


def load_as_hf(ckpt_dir: str | Path, **config_overrides):
    """``(LlamaConfig, state_dict)`` from a checkpoint directory; see ``iter_hf_tensors``."""
    config = read_config(ckpt_dir)
    state = to_hf_state_dict(config, open_ranks(ckpt_dir, config))
    return to_hf_config(config, **config_overrides), state


def _replicated(name: str, parts: list[torch.Tensor]) -> torch.Tensor:
    if any(not torch.equal(parts[0], p) for p in parts[1:]):
        raise ValueError(f"{name}: replicated tensor differs between tp ranks")
    return parts[0]


def _layer(config: dict, stage: list[dict], local: int, index: int) -> dict[str, torch.Tensor]:
    src, dst = f"transformer.layers.{local}.", f"model.layers.{index}."
    state = {}
    for name, (hf_name, dim) in LAYER_NAMES.items():
        parts = [rank[src + name] for rank in stage]
        joined = _replicated(src + name, parts) if dim is None else torch.cat(parts, dim)
        state[dst + hf_name] = joined
    q, k, v = _split_qkv(config, [rank[src + "attention.qkv.weight"] for rank in stage])
    state.update({dst + "self_attn.q_proj.weight": q, dst + "self_attn.k_proj.weight": k,
                  dst + "self_attn.v_proj.weight": v})
    return state


def _split_qkv(config: dict, parts: list[torch.Tensor]):
    tp = len(parts)
    heads, kv = config["num_attention_heads"], config["num_key_value_heads"]
    head = config.get("head_size") or config["hidden_size"] // heads
    sizes = [heads * head // tp, kv * head // tp, kv * head // tp]
    split = [part.split(sizes, dim=0) for part in parts]
    return tuple(torch.cat([s[i] for s in split], dim=0) for i in range(3))


def _ends(config: dict, grid: list[list[dict]]) -> dict[str, torch.Tensor]:
    vocab = config["vocab_size"]
    first, last = grid[0], grid[-1]
    embed = [rank["transformer.vocab_embedding.weight"] for rank in first]
    embedding = torch.cat(embed, 0) if config.get("use_parallel_embedding") else embed[0]
    return {
        "model.embed_tokens.weight": embedding[:vocab],
        "model.norm.weight": _replicated("transformer.ln_f.weight",
                                         [rank["transformer.ln_f.weight"] for rank in last]),
        "lm_head.weight": torch.cat([rank["lm_head.weight"] for rank in last], 0)[:vocab],
    }
