"""Compile and load the CPU engine's C++ kernels (``csrc/cpu_kernels.cpp``); no torch here, so
``tritonllm serve`` can check them before it starts tritonserver.

The library is built with the system's C++ compiler (``$CXX`` or ``g++``; a few seconds) into
``<cache>/kernels/<hash of source, flags and compiler>/`` and loaded with ctypes; a build goes to
a temporary name first, so processes starting together do not trip over each other.

``TRITONLLM_CPU_KERNELS`` chooses what happens when the kernels cannot be used (the CPU lacks
AVX2/FMA, no compiler, the build fails):

- unset or ``1``: the engine runs torch's kernels instead (slower), with a warning;
- ``0`` / ``off``: never use them (the A/B baseline of ``make bench-engine``);
- ``require``: :func:`load` raises :class:`KernelsUnavailable` (the CPU image sets this, so a
  container that would run the slow path fails at start-up and says why).
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import shlex
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("csrc") / "cpu_kernels.cpp"
FLAGS = ["-O3", "-mavx2", "-mfma", "-fno-math-errno", "-fopenmp", "-shared", "-fPIC", "-std=c++17"]
REQUIRED_CPU_FLAGS = ("avx2", "fma")
MODE_ENV = "TRITONLLM_CPU_KERNELS"
STDERR_LINES = 20  # of a failed compile, kept in the reason

_P, _I, _F = ctypes.c_void_p, ctypes.c_int64, ctypes.c_float
SIGNATURES = {
    "tl_linear_f32": [_P, _I, _I, _P, _I, _P, _P, ctypes.c_int],
    "tl_linear_i8": [_P, _I, _I, _P, _P, _I, _P, _P, ctypes.c_int],
    "tl_decode_attention": [_P, _I, _I, _I, _I, _P, _P, _P, _I, _P, _I, _F, _P, ctypes.c_int],
    "tl_decoder_layers": [_P, _I, _P, _P, _P, _P],
    "tl_greedy": [_P, _I, _I, _P, _P],
}


class KernelsUnavailable(RuntimeError):
    """``TRITONLLM_CPU_KERNELS=require`` and the kernels cannot be used here."""


@dataclass(frozen=True)
class KernelStatus:
    """What the engine runs: ``library`` (our kernels) or torch's, and why."""

    library: Path | None
    reason: str

    def describe(self) -> str:
        if self.library is not None:
            return f"ours (AVX2/FMA, OpenMP), {self.library}"
        return f"torch's (slower): {self.reason}"


def mode() -> str:
    """``auto`` (default), ``off`` or ``require``, from ``TRITONLLM_CPU_KERNELS``."""
    value = os.environ.get(MODE_ENV, "1").strip().lower()
    if value in ("0", "false", "no", "off"):
        return "off"
    if value == "require":
        return "require"
    if value in ("", "1", "true", "yes", "on", "auto"):
        return "auto"
    raise ValueError(f"{MODE_ENV}: must be 1, 0 or require, got {value!r}")


def status() -> KernelStatus:
    """Build (once per process and source) and report; never raises for a failed build."""
    if mode() == "off":
        return KernelStatus(None, f"{MODE_ENV}=0")
    return _status()


def load() -> ctypes.CDLL | None:
    """The compiled kernels, or None where they cannot run (the reason is logged once).
    Raises :class:`KernelsUnavailable` instead of returning None in ``require`` mode."""
    found = status()
    if found.library is None:
        if mode() == "require":
            raise KernelsUnavailable(f"CPU kernels required ({MODE_ENV}=require) but "
                                     f"unavailable: {found.reason}")
        return None
    return _open(found.library)


@functools.lru_cache(maxsize=1)
def _status() -> KernelStatus:
    missing = [flag for flag in REQUIRED_CPU_FLAGS if flag not in cpu_flags()]
    if missing:
        return _off(f"this CPU lacks {', '.join(missing)}")
    compiler = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")
    if not compiler:
        return _off("no C++ compiler (set CXX or install g++)")
    try:
        path = _build(compiler)
        _open(path)
    except subprocess.CalledProcessError as exc:
        tail = "\n".join((exc.stderr or "").strip().splitlines()[-STDERR_LINES:])
        command = shlex.join(str(a) for a in exc.cmd)
        return _off(f"{command} failed with status {exc.returncode}:\n{tail}")
    except OSError as exc:
        return _off(str(exc))
    return KernelStatus(path, "built")


def _off(reason: str) -> KernelStatus:
    log.warning("CPU kernels off: %s; using torch's kernels", reason)
    return KernelStatus(None, reason)


@functools.lru_cache(maxsize=None)
def _open(path: Path) -> ctypes.CDLL:
    lib = ctypes.CDLL(str(path))
    for name, argtypes in SIGNATURES.items():
        getattr(lib, name).argtypes = argtypes
        getattr(lib, name).restype = None
    return lib


def cpu_flags() -> set[str]:
    """The instruction-set flags of ``/proc/cpuinfo`` (empty where it cannot be read)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def _build(compiler: str) -> Path:
    version = subprocess.run([compiler, "--version"], capture_output=True, text=True,
                             check=True).stdout.splitlines()[0]
    key = hashlib.sha256("\0".join([SOURCE.read_text(), *FLAGS, version]).encode()).hexdigest()
    from tritonllm.model_source import cache_root

    target = cache_root() / "kernels" / key[:16] / "libtritonllm_cpu.so"
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    log.info("compiling the CPU kernels (%s) into %s", SOURCE.name, target.parent)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(fd)
    try:
        done = subprocess.run([compiler, *FLAGS, str(SOURCE), "-o", tmp],
                              capture_output=True, text=True)
        if done.returncode:
            raise subprocess.CalledProcessError(done.returncode, done.args, stderr=done.stderr)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    log.info("compiled the CPU kernels in %.1f s", time.monotonic() - start)
    return target
