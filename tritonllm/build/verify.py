"""Verify an exported TensorRT-LLM checkpoint before any GPU time is spent.

Three checks, each reported with every problem found (not just the first):

1. ``config.json`` agrees with the profile (dtype, tp/pp, quant_algo, KV cache, AWQ group) and
   with the source model (layers, heads, sizes, vocab, positions, rope base and scaling).
2. Layout: the config keys and every rank file's tensor names, shapes and dtypes are what
   TensorRT-LLM 1.1.0's loader reads (``trtllm_layout``).
3. Weights: the TP/PP shards, reassembled (``trtllm_checkpoint``), equal the source weights cast
   to the profile dtype (full precision, and every norm/embedding), or, for quantized GEMMs,
   dequantize to within the quantizer's rounding bound of the source: per element
   ``|W_eff - W| <= step/2`` where ``W_eff = q * scale * prequant_scale`` (SmoothQuant and AWQ
   fold a per-input-channel smoothing into the weight and undo it on the activations), with
   ``step`` the scale of the element's channel or group; FP8 rounds to 3 mantissa bits, so
   ``|W_eff - W| <= 2^-4 |W_eff| / (1 - 2^-4)`` plus half the smallest subnormal step.
   W4A8 AWQ and NVFP4 weights are not dequantized here (reported as a note).

Tensors are read one at a time, so a 70B checkpoint is verified in bounded memory.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from tqdm import tqdm

from tritonllm.build.quantization import quant_modes

from tritonllm.build import trtllm_layout
from tritonllm.engine import trtllm_checkpoint
from tritonllm.build.planning.architectures import from_hf_config
from tritonllm.build.profile import BuildProfile

DEQUANTIZED = ("FP8", "W8A8_SQ_PER_CHANNEL", "W4A16_AWQ")
GEMM_SUFFIXES = tuple(f"{g}.weight" for g in trtllm_layout.GEMMS)
RELATIVE_SLACK = 1e-3  # fp16-stored scales and fp32 arithmetic on the way


@dataclass(frozen=True)
class VerifyReport:
    checkpoint_dir: str
    problems: tuple[str, ...]
    notes: tuple[str, ...]
    tensors_checked: int
    worst_bound_ratio: float  # max |W_eff - W| / allowed error over quantized GEMMs (<= 1)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict:
        return {**asdict(self), "ok": self.ok}


def verify(profile: BuildProfile, ckpt_dir: str | Path, model_dir: str | Path) -> VerifyReport:
    ckpt_dir, model_dir = Path(ckpt_dir), Path(model_dir)
    config = trtllm_checkpoint.read_config(ckpt_dir)
    hf_config = json.loads((model_dir / "config.json").read_text())
    problems = check_config(config, profile, hf_config) + trtllm_layout.check_config(config)
    ranks = trtllm_checkpoint.open_ranks(ckpt_dir, config)
    for rank, file in enumerate(ranks):
        found = {name: file.spec(name) for name in file}
        problems += trtllm_layout.check_tensors(config, rank, found)
    if problems:
        return VerifyReport(str(ckpt_dir), tuple(problems),
                            ("weights not compared: fix the config and layout first",), 0, 0.0)
    return _compare_weights(config, ranks, SourceWeights(model_dir, hf_config), ckpt_dir)


# ---- 1. config against profile and source ---------------------------------------------------

def check_config(config: dict, profile: BuildProfile, hf_config: dict) -> list[str]:
    q = profile.quantization
    quant = config.get("quantization") or {}
    expected = {
        "architecture": "LlamaForCausalLM", "dtype": profile.dtype,
        "mapping.tp_size": profile.parallel.tp_size, "mapping.pp_size": profile.parallel.pp_size,
        "mapping.world_size": profile.parallel.world_size,
        "quantization.quant_algo": q.quant_mode.quant_algo,
        "quantization.kv_cache_quant_algo": quant_modes.KV_MODES[q.kv_cache][0],
    }
    if q.quant_mode.grouped:
        expected.update({"quantization.group_size": q.group_size,
                         "quantization.pre_quant_scale": True})
    expected.update(_model_keys(hf_config))
    problems = []
    for key, want in expected.items():
        got = _lookup(config, key)
        if not _same(got, want):
            problems.append(f"config.json: {key} is {got!r}, expected {want!r}")
    if q.quant_mode.quantized_by == "modelopt" and "lm_head" not in (
            quant.get("exclude_modules") or []):
        problems.append("config.json: quantization.exclude_modules lacks lm_head (kept in "
                        f"{profile.dtype} by the export)")
    return problems


def _model_keys(hf_config: dict) -> dict:
    arch = from_hf_config(hf_config)
    return {"num_hidden_layers": arch.num_layers, "num_attention_heads": arch.num_heads,
            "num_key_value_heads": arch.num_kv_heads, "hidden_size": arch.hidden_size,
            "head_size": arch.head_dim, "intermediate_size": arch.intermediate_size,
            "vocab_size": arch.vocab_size,
            "max_position_embeddings": arch.max_position_embeddings,
            "norm_epsilon": arch.rms_norm_eps, "rotary_base": arch.rope_theta,
            "rotary_scaling": arch.rope_scaling}


def _lookup(config: dict, dotted: str):
    node = config
    for part in dotted.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def _same(got, want) -> bool:
    if isinstance(want, float) and isinstance(got, (int, float)):
        return math.isclose(got, want, rel_tol=1e-6)
    return got == want


# ---- 3. weights against the source ----------------------------------------------------------

class SourceWeights(Mapping):
    """The Hugging Face checkpoint's tensors by name, read one at a time (single file or
    sharded with ``model.safetensors.index.json``); ``lm_head.weight`` falls back to the
    embedding when the model ties them."""

    def __init__(self, model_dir: Path, hf_config: dict) -> None:
        index = model_dir / "model.safetensors.index.json"
        if index.is_file():
            files = json.loads(index.read_text())["weight_map"]
        else:
            with safe_open(str(model_dir / "model.safetensors"), "pt") as f:
                files = {name: "model.safetensors" for name in f.keys()}
        self._files = {name: model_dir / file for name, file in files.items()}
        if "lm_head.weight" not in self._files and hf_config.get("tie_word_embeddings"):
            self._files["lm_head.weight"] = self._files["model.embed_tokens.weight"]
            self._alias = {"lm_head.weight": "model.embed_tokens.weight"}
        else:
            self._alias = {}

    def __getitem__(self, name: str) -> torch.Tensor:
        with safe_open(str(self._files[name]), "pt") as f:
            return f.get_tensor(self._alias.get(name, name))

    def __iter__(self):
        return iter(self._files)

    def __len__(self) -> int:
        return len(self._files)


def _compare_weights(config: dict, ranks, source: Mapping, ckpt_dir: Path) -> VerifyReport:
    algo = config["quantization"].get("quant_algo")
    checked_gemms = algo in trtllm_checkpoint.FULL_PRECISION_ALGOS + DEQUANTIZED
    notes = [] if checked_gemms else [f"weights: {algo} GEMM weights are not dequantized here; "
                                      "norms and embeddings compared only"]
    plain = {**config, "quantization": {**config["quantization"], "quant_algo": None}}
    values, bounds = [], []
    for r, rank in enumerate(ranks):
        shapes = {n: s.shape for n, s in trtllm_layout.expected_tensors(plain, r).items()}
        values.append(DequantizedRank(rank, algo, shapes, bound=False))
        bounds.append(DequantizedRank(rank, algo, shapes, bound=True))
    pairs = zip(trtllm_checkpoint.iter_hf_tensors(plain, values),
                trtllm_checkpoint.iter_hf_tensors(plain, bounds))
    problems, checked, worst = [], 0, 0.0
    total = 3 + 9 * config["num_hidden_layers"]  # ends + (q, k, v, o, gate, up, down, 2 norms)
    for (name, value), (_, bound) in tqdm(pairs, total=total, desc="verifying", unit="tensor",
                                          leave=False):
        if _is_gemm(name) and not checked_gemms:
            continue
        exact = not (algo in DEQUANTIZED and _is_gemm(name))
        ratio, problem = _compare(name, value, None if exact else bound, source[name],
                                  config["dtype"])
        checked += 1
        worst = max(worst, ratio)
        if problem:
            problems.append(problem)
    return VerifyReport(str(ckpt_dir), tuple(problems), tuple(notes), checked, worst)


def _is_gemm(hf_name: str) -> bool:
    return hf_name.endswith(("_proj.weight",))


def _compare(name: str, value: torch.Tensor, bound: torch.Tensor | None, src: torch.Tensor,
             dtype: str) -> tuple[float, str | None]:
    if value.shape != src.shape:
        return 0.0, f"{name}: shape {tuple(value.shape)} != source {tuple(src.shape)}"
    if bound is None:  # stored as-is: must equal the source cast to the checkpoint dtype
        expected = src.to(getattr(torch, dtype))
        if torch.equal(value, expected):
            return 0.0, None
        diff = (value.float() - expected.float()).abs().max().item()
        return 0.0, f"{name}: differs from the source (max |diff| {diff:.3g})"
    src = src.float()
    error = (value - src).abs()
    allowed = bound * (1 + RELATIVE_SLACK) + RELATIVE_SLACK * src.abs() + 1e-8
    ratio = (error / allowed).max().item()
    bad = int((error > allowed).sum())
    if bad:
        return ratio, (f"{name}: {bad} of {error.numel()} elements beyond the quantization "
                       f"bound (max error {error.max().item():.3g})")
    return ratio, None


class DequantizedRank(Mapping):
    """A rank file seen through dequantization, under the names and ``[out, in]`` shapes of a
    full-precision checkpoint (``shapes``): GEMM weights come back as fp32 effective weights
    (``bound=False``) or their per-element rounding bounds (``bound=True``); other tensors as
    stored, or as zero placeholders in bound mode (they are compared exactly). GEMMs of a
    format not dequantized here come back as zero placeholders (and are not compared)."""

    def __init__(self, rank: Mapping, algo: str | None, shapes: dict, bound: bool) -> None:
        self._rank, self._algo, self._shapes, self._bound = rank, algo, shapes, bound

    def __getitem__(self, name: str):
        if not name.endswith(GEMM_SUFFIXES) or self._algo in trtllm_checkpoint.FULL_PRECISION_ALGOS:
            return self._placeholder(name) if self._bound else self._rank[name]
        if self._algo not in DEQUANTIZED:
            return self._placeholder(name)
        prefix = name[: -len("weight")]
        value, bound = dequantize(self._algo, lambda s: self._rank[prefix + s])
        return bound if self._bound else value

    def _placeholder(self, name: str) -> torch.Tensor:
        return torch.zeros(self._shapes[name], dtype=torch.uint8)

    def __iter__(self):
        return iter(self._rank)

    def __len__(self) -> int:
        return len(self._rank)


def dequantize(algo: str, get) -> tuple[torch.Tensor, torch.Tensor]:
    """``(W_eff, bound)`` of one GEMM shard, both fp32 ``[out, in]``; ``get(suffix)`` reads the
    shard's ``weight`` / ``*_scaling_factor`` tensors."""
    if algo == "FP8":
        value = get("weight").float() * get("weights_scaling_factor").float()
        smallest = get("weights_scaling_factor").float() * 2.0**-10
        return value, value.abs() * 2.0**-4 / (1 - 2.0**-4) + smallest
    if algo == "W8A8_SQ_PER_CHANNEL":
        step = get("weights_scaling_factor").float()[:, None] \
            * get("prequant_scaling_factor").float()[None, :]
        return get("weight").float() * step, step / 2
    return _dequantize_awq(get)


def _dequantize_awq(get) -> tuple[torch.Tensor, torch.Tensor]:
    q = unpack_int4(get("weight"))
    scales = get("weights_scaling_factor").float()
    group = q.shape[1] // scales.shape[1]
    step = scales.repeat_interleave(group, dim=1)
    try:
        step = step * get("prequant_scaling_factor").float()[None, :]
    except KeyError:
        pass
    return q * step, step / 2


def unpack_int4(packed: torch.Tensor) -> torch.Tensor:
    """ModelOpt's AWQ packing undone: ``[out/2, in]`` int8 bytes, low nibble = row 2k, high
    nibble = row 2k+1, signed int4 -> ``[out, in]`` fp32 values in [-8, 7]."""
    data = packed.view(torch.uint8).T.to(torch.int16)  # [in, out/2]
    low, high = data & 0x0F, data >> 4
    pairs = torch.stack([low, high], dim=-1)  # [in, out/2, 2]
    signed = torch.where(pairs >= 8, pairs - 16, pairs)
    return signed.reshape(data.shape[0], -1).T.float().contiguous()
