"""Compile and load the CPU engine's C++ kernels (``csrc/cpu_kernels.cpp``); no torch here, so
``tritonllm serve`` can check them before it starts tritonserver.

The source is built once per instruction set (:data:`ISAS`): for AVX2/FMA, and for AVX-512 with
VNNI (wider vectors, and int8 dot products in one instruction). At run time the engine loads the
best build this CPU and its kernel support (``/proc/cpuinfo`` lists only what the kernel enabled)
can run; ``TRITONLLM_CPU_ISA=avx2`` or ``avx512`` chooses one instead (the A/B of the benchmarks).

Each library is built with the system's C++ compiler (``$CXX`` or ``g++``; a few seconds) into
``<cache>/kernels/<hash of source, flags and compiler>/`` and loaded with ctypes; a build goes to
a temporary name first, so processes starting together do not trip over each other.

``TRITONLLM_CPU_KERNELS`` chooses what happens when the kernels cannot be used (the CPU lacks
even AVX2/FMA, no compiler, the build fails):

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
FLAGS = ["-O3", "-fno-math-errno", "-fopenmp", "-shared", "-fPIC", "-std=c++17"]
MODE_ENV = "TRITONLLM_CPU_KERNELS"
ISA_ENV = "TRITONLLM_CPU_ISA"


@dataclass(frozen=True)
class Isa:
    """One build of the kernels: compiler flags, and the ``/proc/cpuinfo`` flags it needs."""

    name: str
    title: str
    compile_flags: tuple[str, ...]
    cpu_flags: tuple[str, ...]


# Best first. AVX-512 needs BW (int16 and int8 lanes) and VNNI (vpdpwssd) besides F.
ISAS = (
    Isa("avx512", "AVX-512 + VNNI", ("-mavx2", "-mfma", "-mavx512f", "-mavx512bw",
                                     "-mavx512vl", "-mavx512vnni"),
        ("avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni")),
    Isa("avx2", "AVX2/FMA", ("-mavx2", "-mfma"), ("avx2", "fma")),
)
STDERR_LINES = 20  # of a failed compile, kept in the reason

_P, _I, _F = ctypes.c_void_p, ctypes.c_int64, ctypes.c_float
SIGNATURES = {
    "tl_linear_f32": [_P, _I, _I, _P, _I, _P, _P, ctypes.c_int],
    "tl_linear_i8": [_P, _I, _I, _P, _P, _I, _P, _P, ctypes.c_int],
    "tl_linear_i4": [_P, _I, _I, _P, _P, _P, _I, _P, _P, ctypes.c_int],
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
    isa: Isa | None = None

    def describe(self) -> str:
        if self.library is not None:
            return f"ours ({self.isa.title}, OpenMP), {self.library}"
        return f"torch's (slower): {self.reason}"


def supported_isas(flags: set[str] | None = None) -> list[Isa]:
    """The builds this CPU can run, best first."""
    flags = cpu_flags() if flags is None else flags
    return [isa for isa in ISAS if set(isa.cpu_flags) <= flags]


def chosen_isa() -> Isa | None:
    """``TRITONLLM_CPU_ISA``'s build, else the best this CPU runs (None: it runs none).
    Raises ValueError for an unknown name or one this CPU cannot run."""
    wanted = os.environ.get(ISA_ENV, "").strip().lower()
    runnable = supported_isas()
    if wanted in ("", "auto"):
        return runnable[0] if runnable else None
    by_name = {isa.name: isa for isa in ISAS}
    if wanted not in by_name:
        raise ValueError(f"{ISA_ENV}: must be auto or one of {', '.join(by_name)}, got {wanted!r}")
    if by_name[wanted] not in runnable:
        missing = sorted(set(by_name[wanted].cpu_flags) - cpu_flags())
        raise ValueError(f"{ISA_ENV}={wanted}: this CPU lacks {', '.join(missing)}")
    return by_name[wanted]


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


def load(isa: Isa | None = None) -> ctypes.CDLL | None:
    """The compiled kernels (``isa``'s build, else :func:`chosen_isa`'s), or None where they
    cannot run (the reason is logged once). Raises :class:`KernelsUnavailable` instead of
    returning None in ``require`` mode."""
    found = status() if isa is None else _status_of(isa)
    if found.library is None:
        if mode() == "require":
            raise KernelsUnavailable(f"CPU kernels required ({MODE_ENV}=require) but "
                                     f"unavailable: {found.reason}")
        return None
    return _open(found.library)


@functools.lru_cache(maxsize=1)
def _status() -> KernelStatus:
    isa = chosen_isa()
    if isa is None:
        return _off(f"this CPU lacks {', '.join(sorted(set(ISAS[-1].cpu_flags) - cpu_flags()))}")
    return _status_of(isa)


def _status_of(isa: Isa) -> KernelStatus:
    if isa not in supported_isas():
        return _off(f"this CPU cannot run the {isa.title} build")
    try:
        path = build(isa)
        _open(path)
    except subprocess.CalledProcessError as exc:
        tail = "\n".join((exc.stderr or "").strip().splitlines()[-STDERR_LINES:])
        command = shlex.join(str(a) for a in exc.cmd)
        return _off(f"{command} failed with status {exc.returncode}:\n{tail}")
    except OSError as exc:
        return _off(str(exc))
    return KernelStatus(path, "built", isa)


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


def build(isa: Isa, source: Path = SOURCE) -> Path:
    """Compile ``source`` (the kernels, or another file written for both builds) into ``isa``'s
    library unless the cache has it (any host can build any ISA's; only running it needs the
    CPU). Raises OSError (no compiler) or CalledProcessError."""
    compiler = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")
    if not compiler:
        raise OSError("no C++ compiler (set CXX or install g++)")
    version = subprocess.run([compiler, "--version"], capture_output=True, text=True,
                             check=True).stdout.splitlines()[0]
    flags = [*FLAGS, *isa.compile_flags]
    key = hashlib.sha256("\0".join([source.read_text(), *flags, version]).encode()).hexdigest()
    from tritonllm.model_source import cache_root

    target = cache_root() / "kernels" / key[:16] / f"lib{source.stem}.so"
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    log.info("compiling %s (%s) into %s", source.name, isa.title, target.parent)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(fd)
    try:
        done = subprocess.run([compiler, *flags, str(source), "-o", tmp],
                              capture_output=True, text=True)
        if done.returncode:
            raise subprocess.CalledProcessError(done.returncode, done.args, stderr=done.stderr)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    log.info("compiled %s in %.1f s", source.name, time.monotonic() - start)
    return target
