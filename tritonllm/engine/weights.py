"""A Llama checkpoint's weights as the runner computes with them: read in fp32 under Hugging Face
names, q/k/v and gate/up fused into one linear layer each, checked against the model config,
and (with our kernels) copied in the order a step reads them into transparent huge pages."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

import torch

from tritonllm.engine import huge_pages
from tritonllm.engine.linear import Linear

# (weight, bias or None) -> a linear layer (``Linear``, ``Int8Linear`` or ``Int4Linear``)
MakeLinear = Callable[[torch.Tensor, "torch.Tensor | None"], Linear]


@dataclass
class LayerWeights:
    """One decoder layer, fused: ``qkv`` ``[hidden] → [(H + 2*KV) * d]``, ``o``
    ``[H*d] → [hidden]``, ``gate_up`` ``[hidden] → [2*I]``, ``down`` ``[I] → [hidden]``;
    RMSNorm weights ``[hidden]``."""

    input_norm: torch.Tensor
    qkv: Linear
    o: Linear
    post_norm: torch.Tensor
    gate_up: Linear
    down: Linear


@dataclass
class ModelWeights:
    """``embed`` ``[vocab, hidden]``, ``final_norm`` ``[hidden]``, ``lm_head`` (a linear layer
    over the embedding when the model ties them) and the decoder ``layers``. ``embed`` is None
    when the model ties them and ``lm_head`` keeps the fp32 rows in our kernels' panels: the
    lookup reads them there (one copy of the table)."""

    embed: torch.Tensor | None
    final_norm: torch.Tensor
    lm_head: Linear
    layers: list[LayerWeights]

    def embedding(self, ids: torch.Tensor) -> torch.Tensor:
        """The embedding rows of token ``ids``, ``[len(ids), hidden]``."""
        return self.lm_head.rows(ids) if self.embed is None else self.embed[ids]

    def linears(self) -> list[Linear]:
        return [self.lm_head] + [getattr(w, n) for w in self.layers
                                 for n in ("qkv", "o", "gate_up", "down")]


def is_trtllm_checkpoint(path: Path) -> bool:
    """A TensorRT-LLM checkpoint dir: ``config.json`` with ``mapping`` and ``rank0`` weights."""
    config = path / "config.json"
    return ((path / "rank0.safetensors").is_file() and config.is_file()
            and "mapping" in json.loads(config.read_text()))


def load_hf_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """All tensors of a Hugging Face checkpoint directory, under their checkpoint names."""
    files = sorted(path.glob("*.safetensors"))
    if files:
        from safetensors.torch import load_file

        state: dict[str, torch.Tensor] = {}
        for file in files:
            state.update(load_file(str(file)))
        return state
    from transformers import AutoModelForCausalLM  # other formats: let transformers read them

    model = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32)
    return model.state_dict()


def load_weights(hf_config, state: Mapping[str, torch.Tensor], make_linear: MakeLinear,
                 make_head: MakeLinear | None = None) -> ModelWeights:
    """The model's weights from ``state`` (Hugging Face Llama names, any float dtype), linear
    layers made by ``make_linear`` (``lm_head`` by ``make_head`` where given); a ValueError
    names a missing tensor or one whose shape the config does not imply."""
    def get(name: str, optional: bool = False) -> torch.Tensor | None:
        if name not in state:
            if optional:
                return None
            raise ValueError(f"state_dict: missing tensor {name!r}")
        return state[name].detach().to(torch.float32).contiguous()

    embed = get("model.embed_tokens.weight")
    tied = getattr(hf_config, "tie_word_embeddings", False)
    head = None if tied else get("lm_head.weight", optional=True)
    _check_embedding(embed, hf_config)
    lm_head = (make_head or make_linear)(embed if head is None else head, None)
    in_panels = head is None and isinstance(lm_head, Linear) and lm_head.backend == "kernels"
    weights = ModelWeights(
        embed=None if in_panels else embed, final_norm=get("model.norm.weight"), lm_head=lm_head,
        layers=[_layer_weights(get, make_linear, i) for i in range(hf_config.num_hidden_layers)])
    _check_shapes(weights, hf_config)
    return weights


def _layer_weights(get, make_linear: MakeLinear, i: int) -> LayerWeights:
    p = f"model.layers.{i}."

    def fused(names: list[str], suffix: str) -> torch.Tensor | None:
        parts = [get(p + n + suffix, optional=suffix == ".bias") for n in names]
        if any(t is None for t in parts):
            return None
        return torch.cat(parts, dim=0).contiguous()

    def linear(names: list[str]):
        return make_linear(fused(names, ".weight"), fused(names, ".bias"))

    return LayerWeights(
        input_norm=get(p + "input_layernorm.weight"),
        qkv=linear(["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"]),
        o=linear(["self_attn.o_proj"]),
        post_norm=get(p + "post_attention_layernorm.weight"),
        gate_up=linear(["mlp.gate_proj", "mlp.up_proj"]),
        down=linear(["mlp.down_proj"]),
    )


def head_dim(hf_config) -> int:
    return getattr(hf_config, "head_dim", None) or (
        hf_config.hidden_size // hf_config.num_attention_heads)


def _check_embedding(embed: torch.Tensor, hf_config) -> None:
    shape = (hf_config.vocab_size, hf_config.hidden_size)
    if tuple(embed.shape) != shape:
        raise ValueError(f"state_dict: model.embed_tokens.weight has shape "
                         f"{tuple(embed.shape)}, the config implies {shape}")


def _check_shapes(weights: ModelWeights, hf_config) -> None:
    h, d, vocab = hf_config.hidden_size, head_dim(hf_config), hf_config.vocab_size
    heads, kv_heads = hf_config.num_attention_heads, hf_config.num_key_value_heads
    inter = hf_config.intermediate_size
    expected = [("lm_head", weights.lm_head, (vocab, h))]
    for i, layer in enumerate(weights.layers):
        expected += [(f"layers.{i}.q/k/v_proj (fused)", layer.qkv, ((heads + 2 * kv_heads) * d, h)),
                     (f"layers.{i}.o_proj", layer.o, (h, heads * d)),
                     (f"layers.{i}.gate/up_proj (fused)", layer.gate_up, (2 * inter, h)),
                     (f"layers.{i}.down_proj", layer.down, (h, inter))]
    for name, linear, shape in expected:
        actual = (linear.out_features, linear.in_features)
        if actual != shape:
            raise ValueError(f"state_dict: {name} has shape {actual}, "
                             f"the config implies {shape}")


def pack_in_huge_pages(weights: ModelWeights) -> None:
    """Copy every weight tensor, in the order a step reads it (layer by layer, then the final
    norm and ``lm_head``), into one :mod:`huge_pages` region; a tensor held twice (a tied
    ``lm_head``) is copied once. Only plain tensors, which our kernels read: nothing is packed
    when a linear layer runs on oneDNN's or fbgemm's packed weights."""
    def linear(layer) -> list[tuple[object, str]]:
        names = ("weight", "qweight", "packed", "block_scale", "scale", "bias")
        return [(layer, name) for name in names
                if isinstance(getattr(layer, name, None), torch.Tensor)]

    if any(layer.backend != "kernels" for layer in weights.linears()):
        return
    slots = []
    for w in weights.layers:
        slots += [(w, "input_norm"), *linear(w.qkv), *linear(w.o), (w, "post_norm"),
                  *linear(w.gate_up), *linear(w.down)]
    slots += [(weights, "final_norm"), *linear(weights.lm_head)]
    if weights.embed is not None:
        slots.append((weights, "embed"))
    unique: dict[int, torch.Tensor] = {}
    for holder, name in slots:
        tensor = getattr(holder, name)
        unique.setdefault(id(tensor), tensor.contiguous())
    copies = dict(zip(unique, huge_pages.pack(list(unique.values()))))
    for holder, name in slots:
        setattr(holder, name, copies[id(getattr(holder, name))])
