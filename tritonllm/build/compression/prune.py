"""Structured pruning of a Hugging Face Llama, with importance measured on calibration text.

Three cuts, each leaving an ordinary ``LlamaForCausalLM`` (every layer the same shape, so any
Llama loader, ModelOpt's export and TensorRT-LLM read it unchanged):

- depth: remove the decoder layers that change the hidden state least on calibration text
  (block influence, 1 - cos(input, output), as in ShortGPT): one forward pass ranks every layer.
  Measuring the calibration loss without each layer costs a pass per layer (and a greedy
  search a pass per layer per removal): measured here under the shared machine's load, ~15 s
  per pass on SmolLM2, too much for the 30-minute budget; distillation repairs what the
  ranking misses.
- MLP width: keep the same number of intermediate channels in every layer; within a layer, the
  channels with the largest mean contribution to the layer's output,
  ``mean_tokens(|act(gate x) * up x|_j) * ||down[:, j]||``.
- attention width: remove whole KV groups (one KV head and the query heads that read it), so
  grouped-query attention keeps its ratio; a group's importance is the summed mean norm of its
  query heads' outputs after ``o_proj``.

Why not ModelOpt's pruning (0.47, checked here on a tiny HF Llama on CPU):
- ``fastnas`` traces the model with torch.fx; HF Llama's decoder layers and attention fail that
  trace ("co_varnames is too small"), so it sees only loose ``nn.Linear`` children: no layer
  removal, no KV-group-aware head pruning; it also runs a NAS search and needs ``torchprofile``.
- ``mcore_minitron`` prunes Megatron-Core models only (it is what this module imitates: depth by
  layer importance, width by activation magnitude).
- ``puzzletron`` is a Hydra-configured distributed pipeline that trains per-block replacements
  and produces per-layer heterogeneous architectures (DeciLM-style), which are not ordinary Llama
  checkpoints and far beyond a 30-minute CPU budget.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

MLP_MULTIPLE = 32  # kept intermediate sizes are rounded to this (GEMM-friendly, tp-divisible)


@dataclass(frozen=True)
class PrunePlan:
    """What pruning keeps, in the teacher's numbering (sorted)."""

    layers: tuple[int, ...]
    mlp_channels: tuple[tuple[int, ...], ...]  # per kept layer
    kv_groups: tuple[tuple[int, ...], ...]  # per kept layer

    def to_dict(self) -> dict:
        return {"layers": list(self.layers), "intermediate_size": len(self.mlp_channels[0]),
                "kv_groups": [list(g) for g in self.kv_groups]}


def kept_layers(num_layers: int, depth: float) -> int:
    """Layers left after removing ``depth`` (a share, rounded to whole layers) of them."""
    keep = num_layers - round(depth * num_layers)
    if keep < 1:
        raise ValueError(f"compression.depth: {depth} would remove all {num_layers} layers")
    return keep


def kept_mlp(intermediate: int, mlp: float) -> int:
    """Intermediate channels left: ``(1 - mlp) * intermediate`` rounded to MLP_MULTIPLE."""
    if mlp == 0:
        return intermediate
    keep = max(MLP_MULTIPLE, round((1 - mlp) * intermediate / MLP_MULTIPLE) * MLP_MULTIPLE)
    return min(keep, intermediate)


def kept_kv_groups(num_kv_heads: int, drop: int, num_heads: int, hidden_size: int) -> int:
    """KV groups left. transformers 5 refuses a Llama config whose hidden size is not a multiple
    of its query-head count (even with an explicit head_dim), so such a cut is refused here."""
    if drop >= num_kv_heads:
        raise ValueError(f"compression.kv_groups: {drop} would remove all {num_kv_heads} KV "
                         "groups")
    heads = (num_kv_heads - drop) * (num_heads // num_kv_heads)
    if drop and hidden_size % heads:
        raise ValueError(f"compression.kv_groups: {drop} leaves {heads} query heads, which do "
                         f"not divide hidden_size {hidden_size} (transformers 5 cannot load "
                         "such a checkpoint)")
    return num_kv_heads - drop


# ---- importance ------------------------------------------------------------------------------

def calibration_loss(model, windows: list[torch.Tensor]) -> float:
    """Mean next-token cross-entropy over ``windows`` (each [1, T])."""
    total, count = 0.0, 0
    with torch.no_grad():
        for ids in windows:
            logits = model(ids, use_cache=False).logits[0, :-1].float()
            total += torch.nn.functional.cross_entropy(logits, ids[0, 1:], reduction="sum").item()
            count += ids.shape[1] - 1
    return total / count


def layer_influence(model, windows: list[torch.Tensor]) -> list[float]:
    """Per decoder layer: 1 - mean cosine similarity of its input and output hidden states over
    the calibration tokens (ShortGPT's "block influence"; one forward pass for all layers)."""
    total = torch.zeros(model.config.num_hidden_layers, dtype=torch.float64)
    count = 0
    with torch.no_grad():
        for ids in windows:
            states = model(ids, use_cache=False, output_hidden_states=True).hidden_states
            for i in range(len(total)):
                cos = torch.nn.functional.cosine_similarity(states[i][0].float(),
                                                            states[i + 1][0].float(), dim=-1)
                total[i] += (1 - cos).sum().item()
            count += ids.shape[1]
    return (total / count).tolist()


def choose_layers(model, windows: list[torch.Tensor], keep: int, progress=None
                  ) -> tuple[int, ...]:
    """The ``keep`` most influential layers, in order (see the module docstring)."""
    influence = layer_influence(model, windows)
    ranked = sorted(range(len(influence)), key=influence.__getitem__)  # least influential first
    dropped = sorted(ranked[:len(influence) - keep])
    if progress:
        progress("depth: layer influence " + " ".join(f"{i}:{v:.3f}"
                                                      for i, v in enumerate(influence)))
        progress(f"depth: removing layers {dropped}")
    return tuple(sorted(ranked[len(influence) - keep:]))


def width_importance(model, windows: list[torch.Tensor]) -> tuple[list, list]:
    """Per layer: MLP channel scores [intermediate] and KV-group scores [num_kv_heads]."""
    config = model.config
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    mlp_acts, head_norms, hooks = [], [], []
    for layer in model.model.layers:
        mlp_acts.append(torch.zeros(config.intermediate_size))
        head_norms.append(torch.zeros(config.num_attention_heads))
        hooks.append(layer.mlp.down_proj.register_forward_pre_hook(
            _accumulate_abs(mlp_acts[-1])))
        hooks.append(layer.self_attn.o_proj.register_forward_pre_hook(
            _accumulate_heads(head_norms[-1], layer.self_attn.o_proj.weight, head_dim)))
    try:
        calibration_loss(model, windows)
    finally:
        for hook in hooks:
            hook.remove()
    per_group = config.num_attention_heads // config.num_key_value_heads
    mlp_scores = [acts * layer.mlp.down_proj.weight.norm(dim=0)
                  for acts, layer in zip(mlp_acts, model.model.layers)]
    group_scores = [norms.view(-1, per_group).sum(-1) for norms in head_norms]
    return mlp_scores, group_scores


def _accumulate_abs(total: torch.Tensor):
    def hook(_module, args) -> None:
        total.add_(args[0].detach().abs().flatten(0, -2).mean(0).float())

    return hook


def _accumulate_heads(total: torch.Tensor, o_weight: torch.Tensor, head_dim: int):
    def hook(_module, args) -> None:
        x = args[0].detach().flatten(0, -2).float()  # [tokens, heads * head_dim]
        heads = x.view(x.shape[0], -1, head_dim)  # [tokens, heads, head_dim]
        w = o_weight.detach().float().view(o_weight.shape[0], -1, head_dim)  # [hidden, heads, d]
        out = torch.einsum("thd,ohd->tho", heads, w)  # each head's share of o_proj's output
        total.add_(out.norm(dim=-1).mean(0))

    return hook


def top_k(scores: torch.Tensor, k: int) -> tuple[int, ...]:
    return tuple(sorted(scores.topk(k).indices.tolist()))


# ---- the cut ---------------------------------------------------------------------------------

def make_plan(model, windows: list[torch.Tensor], depth: float, mlp: float, kv_drop: int,
              progress=None) -> PrunePlan:
    config = model.config
    layers = tuple(range(config.num_hidden_layers))
    if depth > 0:
        layers = choose_layers(model, windows, kept_layers(len(layers), depth), progress)
    mlp_keep = kept_mlp(config.intermediate_size, mlp)
    groups_keep = kept_kv_groups(config.num_key_value_heads, kv_drop,
                                 config.num_attention_heads, config.hidden_size)
    if mlp_keep == config.intermediate_size and groups_keep == config.num_key_value_heads:
        every_channel = tuple(range(config.intermediate_size))
        every_group = tuple(range(config.num_key_value_heads))
        return PrunePlan(layers, (every_channel,) * len(layers), (every_group,) * len(layers))
    mlp_scores, group_scores = width_importance(model, windows)
    if progress:
        progress(f"width: keeping {mlp_keep} MLP channels and {groups_keep} KV groups per layer")
    return PrunePlan(layers, tuple(top_k(mlp_scores[i], mlp_keep) for i in layers),
                     tuple(top_k(group_scores[i], groups_keep) for i in layers))


def apply_plan(model, plan: PrunePlan):
    """A new, smaller ``LlamaForCausalLM`` holding the kept weights of ``model``."""
    from transformers import LlamaForCausalLM

    config = pruned_config(model.config, plan)
    state = pruned_state_dict(model, plan)
    student = LlamaForCausalLM(config)
    student.load_state_dict(state, strict=True)
    return student.eval()


def pruned_config(config, plan: PrunePlan):
    new = config.__class__.from_dict(config.to_dict())
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    per_group = config.num_attention_heads // config.num_key_value_heads
    new.num_hidden_layers = len(plan.layers)
    new.intermediate_size = len(plan.mlp_channels[0])
    new.num_key_value_heads = len(plan.kv_groups[0])
    new.num_attention_heads = new.num_key_value_heads * per_group
    new.head_dim = head_dim  # explicit: no longer hidden_size / num_attention_heads
    if getattr(new, "layer_types", None):
        new.layer_types = [config.layer_types[i] for i in plan.layers]
    return new


def pruned_state_dict(model, plan: PrunePlan) -> dict[str, torch.Tensor]:
    config = model.config
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    per_group = config.num_attention_heads // config.num_key_value_heads
    source = model.state_dict()
    out = {k: v for k, v in source.items() if not k.startswith("model.layers.")}
    for new_index, (old_index, channels, groups) in enumerate(
            zip(plan.layers, plan.mlp_channels, plan.kv_groups)):
        rows = _slices(source, old_index, torch.tensor(channels),
                       _head_rows(groups, per_group, head_dim), _head_rows(groups, 1, head_dim))
        out.update({f"model.layers.{new_index}.{k}": v for k, v in rows.items()})
    return out


def _head_rows(groups: tuple[int, ...], heads_per_group: int, head_dim: int) -> torch.Tensor:
    """Row indices of the heads of ``groups`` in a [heads * head_dim, ...] projection."""
    heads = [g * heads_per_group + h for g in groups for h in range(heads_per_group)]
    return torch.cat([torch.arange(h * head_dim, (h + 1) * head_dim) for h in heads])


def _slices(source: dict, layer: int, channels: torch.Tensor, q_rows: torch.Tensor,
            kv_rows: torch.Tensor) -> dict[str, torch.Tensor]:
    """One layer's tensors with the kept channels/heads (biases, if any, follow their rows)."""
    prefix = f"model.layers.{layer}."
    cut = {"self_attn.q_proj": (0, q_rows), "self_attn.k_proj": (0, kv_rows),
           "self_attn.v_proj": (0, kv_rows), "self_attn.o_proj": (1, q_rows),
           "mlp.gate_proj": (0, channels), "mlp.up_proj": (0, channels),
           "mlp.down_proj": (1, channels)}
    out = {}
    for name, tensor in source.items():
        if not name.startswith(prefix):
            continue
        local = name[len(prefix):]
        module, _, kind = local.rpartition(".")
        if module in cut:
            dim, index = cut[module]
            if kind == "bias" and dim == 1:
                out[local] = tensor.clone()
                continue
            tensor = tensor.index_select(dim if kind == "weight" else 0, index)
        out[local] = tensor.clone()
    return out
