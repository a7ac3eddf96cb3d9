"""Building the CPU kernels: what is reported when they cannot be used, and the three modes of
TRITONLLM_CPU_KERNELS. A real compiler builds them where one is present; a failing compiler is a
small script, so the compiler's own message can be checked in the reason."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from tritonllm.engine import kernel_build


@pytest.fixture(autouse=True)
def fresh(monkeypatch, tmp_path):
    monkeypatch.setenv("TRITONLLM_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv(kernel_build.MODE_ENV, raising=False)
    kernel_build._status.cache_clear()
    yield
    kernel_build._status.cache_clear()


def failing_compiler(tmp_path):
    script = tmp_path / "bad-cxx"
    script.write_text("#!/bin/sh\n"
                      "if [ \"$1\" = --version ]; then echo 'bad-cxx 1.0'; exit 0; fi\n"
                      "echo 'cpu_kernels.cpp:1: error: this compiler refuses' >&2\nexit 4\n")
    script.chmod(0o755)
    return str(script)


def test_a_failed_compile_reports_the_compilers_stderr(monkeypatch, tmp_path):
    if not {"avx2", "fma"} <= kernel_build.cpu_flags():
        pytest.skip("no AVX2/FMA: the compiler is never run")
    monkeypatch.setenv("CXX", failing_compiler(tmp_path))
    status = kernel_build.status()
    assert status.library is None
    assert "failed with status 4" in status.reason
    assert "error: this compiler refuses" in status.reason
    assert status.describe().startswith("torch's (slower): ")
    assert kernel_build.load() is None  # auto: the engine falls back


def test_require_mode_raises_with_the_reason(monkeypatch, tmp_path):
    monkeypatch.setenv("CXX", failing_compiler(tmp_path))
    monkeypatch.setenv(kernel_build.MODE_ENV, "require")
    with pytest.raises(kernel_build.KernelsUnavailable, match="CPU kernels required"):
        kernel_build.load()


def test_off_mode_never_builds(monkeypatch, tmp_path):
    monkeypatch.setenv("CXX", failing_compiler(tmp_path))
    monkeypatch.setenv(kernel_build.MODE_ENV, "0")
    status = kernel_build.status()
    assert (status.library, status.reason) == (None, "TRITONLLM_CPU_KERNELS=0")
    assert not (tmp_path / "cache" / "kernels").exists()


def test_an_unknown_mode_is_refused(monkeypatch):
    monkeypatch.setenv(kernel_build.MODE_ENV, "sometimes")
    with pytest.raises(ValueError, match="TRITONLLM_CPU_KERNELS: must be 1, 0 or require"):
        kernel_build.status()


def test_builds_and_loads_with_the_real_compiler():
    if not shutil.which("g++") or not {"avx2", "fma"} <= kernel_build.cpu_flags():
        pytest.skip("no g++ or no AVX2/FMA here")
    status = kernel_build.status()
    assert status.library is not None and status.library.is_file()
    assert status.describe().startswith("ours (AVX2/FMA")
    assert kernel_build.load() is not None


def test_status_needs_no_torch():
    """tritonllm serve checks the kernels in its own process, which must stay light."""
    code = ("import sys; from tritonllm.engine import kernel_build; kernel_build.cpu_flags(); "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
