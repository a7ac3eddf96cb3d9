"""Node facts: nvidia-smi's CSV, compute capabilities, the engine directory tag."""

from __future__ import annotations

import pytest

from tritonllm.gpu_stack import TENSORRT_LLM_VERSION
from tritonllm.deploy.node import NodeFacts, detect, parse_nvidia_smi, tensorrt_llm_version


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
    assert NodeFacts(TENSORRT_LLM_VERSION, "NVIDIA L4", "8.9", 1).sm_tag == "sm89"
    with pytest.raises(ValueError, match="gpu_count"):
        NodeFacts(TENSORRT_LLM_VERSION, None, None, -1)
    with pytest.raises(ValueError, match="compute_capability"):
        NodeFacts(TENSORRT_LLM_VERSION, "NVIDIA L4", None, 1)


def test_detect_on_this_machine():
    """No GPU and no TensorRT-LLM here: detection says so instead of failing."""
    facts = detect()
    assert facts.gpu_count == 0 and facts.tensorrt_llm_version is None


def test_version_read_without_importing(tmp_path, monkeypatch):
    """The version the build records (``tensorrt_llm.__version__``), from version.py alone:
    the package's __init__ here would fail if it were imported."""
    package = tmp_path / "tensorrt_llm"
    package.mkdir()
    (package / "__init__.py").write_text("raise ImportError('importing loads CUDA')\n")
    (package / "version.py").write_text('__version__ = "1.1.0"\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    assert tensorrt_llm_version() == "1.1.0"
