"""Shared fixtures for the engine tests: a tiny random Llama and the real SmolLM2 checkpoint.

Torch and transformers are imported inside the fixtures, so the scheduler and KV-cache test
modules stay importable without them (their no-torch checks run in a fresh interpreter).
"""

from __future__ import annotations

import pytest
from tests.engine.engine_helpers import tiny_llama
from tritonllm.engine import kernel_build


@pytest.fixture(scope="session")
def tiny_model():
    return tiny_llama()


@pytest.fixture(scope="session")
def smollm_dir():
    from tritonllm.model_source import default_model_dir

    return default_model_dir()


@pytest.fixture(scope="session")
def smollm(smollm_dir):
    """Transformers' ``LlamaForCausalLM`` and tokenizer for the real checkpoint (reference)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(smollm_dir), dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(str(smollm_dir))


@pytest.fixture(params=[isa.name for isa in kernel_build.supported_isas()] or ["none"])
def kernel_isa(request, monkeypatch):
    """Runs the test once for each build of our kernels this CPU can run (AVX-512 + VNNI,
    AVX2/FMA), chosen as users choose it (``TRITONLLM_CPU_ISA``); skipped where it runs none."""
    if request.param == "none":
        pytest.skip("this CPU runs none of our kernel builds")
    monkeypatch.setenv(kernel_build.ISA_ENV, request.param)
    kernel_build._status.cache_clear()
    yield request.param
    kernel_build._status.cache_clear()
