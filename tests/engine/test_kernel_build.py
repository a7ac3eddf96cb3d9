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
    monkeypatch.delenv(kernel_build.ISA_ENV, raising=False)
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
    if not shutil.which("g++") or not kernel_build.supported_isas():
        pytest.skip("no g++ or no AVX2/FMA here")
    status = kernel_build.status()
    assert status.library is not None and status.library.is_file()
    best = kernel_build.supported_isas()[0]
    assert status.isa == best  # the best build this CPU runs, unless told otherwise
    assert status.describe().startswith(f"ours ({best.title}, OpenMP), ")
    assert kernel_build.load() is not None


def test_every_build_compiles_on_any_host_and_runs_only_where_the_cpu_can():
    """An image built on one machine serves on another: each ISA's library is compiled
    regardless of the build host's CPU (into its own cache entry); loading checks the CPU."""
    if not shutil.which("g++"):
        pytest.skip("no g++ here")
    paths = {isa.name: kernel_build.build(isa) for isa in kernel_build.ISAS}
    assert len(set(paths.values())) == len(kernel_build.ISAS)
    runnable = kernel_build.supported_isas()
    for isa in kernel_build.ISAS:
        assert (kernel_build.load(isa) is not None) == (isa in runnable), isa.name


@pytest.mark.parametrize("flags, expected", [
    ({"avx2", "fma"}, ["avx2"]),
    ({"avx2", "fma", "avx512f", "avx512bw", "avx512vl"}, ["avx2"]),  # no VNNI
    ({"avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni"}, ["avx512", "avx2"]),
    ({"sse4_2"}, []),
])
def test_supported_builds_follow_the_cpu_flags(flags, expected):
    assert [isa.name for isa in kernel_build.supported_isas(flags)] == expected


def test_the_isa_is_chosen_by_environment_and_refused_with_the_reason(monkeypatch):
    runnable = kernel_build.supported_isas()
    assert kernel_build.chosen_isa() == (runnable[0] if runnable else None)
    for isa in kernel_build.ISAS:
        monkeypatch.setenv(kernel_build.ISA_ENV, isa.name)
        if isa in runnable:
            assert kernel_build.chosen_isa() == isa
        else:
            with pytest.raises(ValueError, match=f"TRITONLLM_CPU_ISA={isa.name}: this CPU lacks"):
                kernel_build.chosen_isa()
    monkeypatch.setenv(kernel_build.ISA_ENV, "sse9")
    with pytest.raises(ValueError, match="TRITONLLM_CPU_ISA: must be auto or one of avx512, avx2"):
        kernel_build.chosen_isa()


def test_status_needs_no_torch():
    """tritonllm serve checks the kernels in its own process, which must stay light."""
    code = ("import sys; from tritonllm.engine import kernel_build; kernel_build.cpu_flags(); "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
