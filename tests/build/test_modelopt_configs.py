"""ModelOpt configs per mode, in both preset shapes: 0.47's list (`make test`) and 0.37's dict
(what TensorRT-LLM 1.1.0's container carries; `make test-gpuset`). Each run checks the presets
of the ModelOpt it has installed."""

from __future__ import annotations

from tritonllm.build.quantization import modelopt_configs as mc
from tritonllm.build.profile import QuantSpec


def _entries(cfg, name):
    return mc.quantizer_cfgs(cfg, name)


def _bits_axis(quantizer: dict) -> dict:
    return {k: v for k, v in quantizer.items() if k != "enable"}


def test_nothing_to_calibrate_for_weight_only_without_kv():
    for mode in ("none", "int8_wo", "int4_wo"):
        assert mc.for_export(QuantSpec(mode=mode)) is None
    assert mc.for_simulation(QuantSpec(mode="none")) is None


def test_kv_only_calibration_switches_everything_else_off():
    cfg = mc.for_export(QuantSpec(mode="int8_wo", kv_cache="int8"))
    if mc.is_list_format():  # 0.47: entries applied in order, the KV one last
        assert cfg["quant_cfg"][0] == {"quantizer_name": "*", "enable": False}
        assert cfg["quant_cfg"][-1] == {"quantizer_name": mc.KV_PATTERN,
                                        "cfg": {"num_bits": 8, "axis": None}}
    else:  # 0.37: a default entry plus patterns
        assert cfg["quant_cfg"] == {"default": {"enable": False},
                                    mc.KV_PATTERN: {"num_bits": 8, "axis": None, "enable": True}}


def test_awq_group_and_search_grid_and_smoothquant_alpha():
    awq = mc.for_export(QuantSpec(mode="int4_awq", group_size=64, awq_alpha_step=0.5))
    assert _entries(awq, "*weight_quantizer")[0]["block_sizes"][-1] == 64
    assert awq["algorithm"] == {"method": "awq_lite", "alpha_step": 0.5}
    w4a8 = mc.for_export(QuantSpec(mode="w4a8_awq", group_size=32))
    stages = _entries(w4a8, "*weight_quantizer")[0]
    assert stages[0]["block_sizes"][-1] == 32 and "block_sizes" not in stages[1]
    sq = mc.for_export(QuantSpec(mode="int8_sq", smoothquant_alpha=0.8, kv_cache="fp8"))
    assert sq["algorithm"] == {"method": "smoothquant", "alpha": 0.8}
    assert _bits_axis(_entries(sq, mc.KV_PATTERN)[0]) == {"num_bits": (4, 3), "axis": None}


def test_int4_weight_only_simulates_per_channel_int4():
    cfg = mc.for_simulation(QuantSpec(mode="int4_wo"))
    assert _bits_axis(_entries(cfg, "*weight_quantizer")[0]) == {"num_bits": 4, "axis": 0}


def test_presets_are_copies():
    import modelopt.torch.quantization as mtq

    mc.for_export(QuantSpec(mode="int4_awq", group_size=32))
    assert _entries(mtq.INT4_AWQ_CFG, "*weight_quantizer")[0]["block_sizes"][-1] == 128


def test_dict_shaped_presets_of_modelopt_0_37():
    # The shape of ModelOpt 0.37's INT4_AWQ_CFG / W4A8_AWQ_BETA_CFG (a dict of patterns).
    awq = {"quant_cfg": {"*weight_quantizer": {"num_bits": 4, "block_sizes": {-1: 128},
                                               "enable": True},
                         "*input_quantizer": {"enable": False}, "default": {"enable": False}},
           "algorithm": {"method": "awq_lite", "alpha_step": 0.1}}
    mc._edit_weight_quantizer(awq, lambda w: mc._set_block(w, 64))
    assert awq["quant_cfg"]["*weight_quantizer"]["block_sizes"][-1] == 64
    w4a8 = {"quant_cfg": {"*weight_quantizer": [{"num_bits": 4, "block_sizes": {-1: 128}},
                                                {"num_bits": (4, 3), "axis": None}]}}
    mc._edit_weight_quantizer(w4a8, lambda w: mc._set_block(w, 32))
    assert w4a8["quant_cfg"]["*weight_quantizer"][0]["block_sizes"][-1] == 32
    mc._with_kv(awq, "fp8")
    assert awq["quant_cfg"][mc.KV_PATTERN] == {"num_bits": (4, 3), "axis": None, "enable": True}


def test_int8_weight_only_preset_in_either_modelopt():
    """0.47 has INT8_WEIGHT_ONLY_CFG; 0.37 gets the same settings from INT8_DEFAULT_CFG."""
    cfg = mc.for_simulation(QuantSpec(mode="int8_wo"))
    assert _bits_axis(_entries(cfg, "*weight_quantizer")[0]) == {"num_bits": 8, "axis": 0}
    inputs = _entries(cfg, "*input_quantizer")
    if mc.is_list_format():
        assert {"quantizer_name": "*input_quantizer", "enable": False} in cfg["quant_cfg"]
    else:
        assert inputs == [{"enable": False}]
