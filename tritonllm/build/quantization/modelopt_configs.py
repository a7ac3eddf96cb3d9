"""ModelOpt quantization configs for each mode, written once for two ModelOpt generations.

TensorRT-LLM 1.1.0 pins ``nvidia-modelopt~=0.37.0`` (its GPU container carries it); our CPU
environment runs 0.47.0 beside torch 2.13 / transformers 5.24. Their presets differ in shape:
0.37 keeps ``quant_cfg`` as a dict ``{pattern: cfg}``, 0.47 as a list of
``{"quantizer_name": pattern, "cfg": ..., "enable": ...}`` entries applied in order. The edits
here (AWQ block size, SmoothQuant alpha, KV-cache quantizers, a disable-everything base) handle
both, so the same quantize stage runs on CPU here and in the TensorRT-LLM container. Both
versions were seen to export the same checkpoint layout (names, shapes, dtypes) for FP8, INT8
SmoothQuant and INT4 AWQ on SmolLM2.
"""

from __future__ import annotations

import copy

from tritonllm.build.profile import QuantSpec

KV_PATTERN = "*[kv]_bmm_quantizer"  # ModelOpt's KV-cache quantizers on attention modules


def for_export(q: QuantSpec) -> dict | None:
    """The config that calibrates what the checkpoint needs: None when nothing is calibrated
    (mode none/int8_wo/int4_wo without a quantized KV cache; TensorRT-LLM quantizes W8A16 and
    W4A16 weights itself)."""
    mode = q.quant_mode
    if mode.quantized_by == "modelopt":
        return _with_kv(_preset(q), q.kv_cache)
    if q.kv_cache != "none":
        return _with_kv(_disabled(), q.kv_cache)
    return None


def for_simulation(q: QuantSpec) -> dict | None:
    """The config whose fake quantization reproduces the engine's rounding on CPU (weights,
    activations and KV cache); None for mode none without KV quantization."""
    if q.mode == "none":
        return _with_kv(_disabled(), q.kv_cache) if q.kv_cache != "none" else None
    return _with_kv(_preset(q), q.kv_cache)


def _mtq():
    import modelopt.torch.quantization as mtq

    return mtq


def is_list_format() -> bool:
    return isinstance(_mtq().FP8_DEFAULT_CFG["quant_cfg"], list)


def _preset(q: QuantSpec) -> dict:
    mode = q.quant_mode
    if mode.name == "int4_wo":  # per-channel int4: the int8 weight-only preset at 4 bits
        cfg = _named("INT8_WEIGHT_ONLY_CFG")
        _edit_weight_quantizer(cfg, lambda w: w.update(num_bits=4))
        return cfg
    cfg = _named(mode.modelopt_config)
    if mode.grouped:
        _edit_weight_quantizer(cfg, lambda w: _set_block(w, q.group_size))
        cfg["algorithm"] = {"method": "awq_lite", "alpha_step": q.awq_alpha_step}
    if mode.name == "int8_sq":
        cfg["algorithm"] = {"method": "smoothquant", "alpha": q.smoothquant_alpha}
    return cfg


def _named(name: str) -> dict:
    """A deep copy of ModelOpt's preset ``name``. 0.37 has no INT8_WEIGHT_ONLY_CFG: there it is
    INT8_DEFAULT_CFG (per-channel int8 weights, axis 0) with the input quantizers off, which is
    what 0.47's preset holds."""
    mtq = _mtq()
    if name == "INT8_WEIGHT_ONLY_CFG" and not hasattr(mtq, name):
        cfg = copy.deepcopy(mtq.INT8_DEFAULT_CFG)
        cfg["quant_cfg"]["*input_quantizer"] = {"enable": False}
        return cfg
    return copy.deepcopy(getattr(mtq, name))


def _set_block(weight_cfg: dict, size: int) -> None:
    if "block_sizes" in weight_cfg:  # W4A8's second (FP8) stage has none
        weight_cfg["block_sizes"][-1] = size


def quantizer_cfgs(cfg: dict, pattern: str) -> list:
    """The quantizer settings ``cfg`` gives ``pattern``, in either preset shape: each a dict, or
    a list of per-stage dicts (W4A8). 0.37's dict entries carry their ``enable`` flag inside."""
    quant_cfg = cfg["quant_cfg"]
    if isinstance(quant_cfg, list):
        return [e["cfg"] for e in quant_cfg if e.get("quantizer_name") == pattern and "cfg" in e]
    return [quant_cfg[pattern]] if pattern in quant_cfg else []


def _edit_weight_quantizer(cfg: dict, edit) -> None:
    for weight_cfg in quantizer_cfgs(cfg, "*weight_quantizer"):
        for stage in weight_cfg if isinstance(weight_cfg, list) else [weight_cfg]:
            edit(stage)


def _disabled() -> dict:
    """Every quantizer off (the KV-cache entries added after it switch those back on)."""
    if is_list_format():
        return {"quant_cfg": [{"quantizer_name": "*", "enable": False}], "algorithm": "max"}
    return {"quant_cfg": {"default": {"enable": False}}, "algorithm": "max"}


def _with_kv(cfg: dict, kv_cache: str) -> dict:
    if kv_cache == "none":
        return cfg
    bits = (4, 3) if kv_cache == "fp8" else 8
    if isinstance(cfg["quant_cfg"], list):
        cfg["quant_cfg"].append({"quantizer_name": KV_PATTERN,
                                 "cfg": {"num_bits": bits, "axis": None}})
    else:
        cfg["quant_cfg"][KV_PATTERN] = {"num_bits": bits, "axis": None, "enable": True}
    return cfg
