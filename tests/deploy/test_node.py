"""Node facts: nvidia-smi's CSV, compute capabilities, the engine directory tag."""

from __future__ import annotations

import pytest

from tritonllm.deploy.node import NodeFacts, detect, parse_nvidia_smi


def test_parse_four_h100():
    text = "NVIDIA H100 80GB HBM3, 9.0\n" * 4
    assert parse_nvidia_smi(text) == ("NVIDIA H100 80GB HBM3", "9.0", 4)


def test_parse_no_gpu():
    assert parse_nvidia_smi("\n") == (None, None, 0)


def test_mixed_architectures_are_refused():
    with pytest.raises(ValueError, match=r"mixed compute capabilities \['8.9', '9.0'\]"):
        parse_nvidia_smi("NVIDIA H100 80GB HBM3, 9.0\nNVIDIA L4, 8.9\n")


def test_garbage_is_refused():
    with pytest.raises(ValueError, match="nvidia-smi"):
        parse_nvidia_smi("No devices were found")


def test_facts_validation_and_tag():
    assert NodeFacts("1.2.1", "NVIDIA L4", "8.9", 1).sm_tag == "sm89"
    with pytest.raises(ValueError, match="gpu_count"):
        NodeFacts("1.2.1", None, None, -1)
    with pytest.raises(ValueError, match="compute_capability"):
        NodeFacts("1.2.1", "NVIDIA L4", None, 1)


def test_detect_on_this_machine():
    """No GPU and no TensorRT-LLM here: detection says so instead of failing."""
    facts = detect()
    assert facts.gpu_count == 0 and facts.tensorrt_llm_version is None
