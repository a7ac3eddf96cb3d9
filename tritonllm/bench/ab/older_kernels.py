"""An older revision's CPU kernels beside this tree's, for the A/B scripts here
(``kernel_step_ab.py``, ``linear_layers_ab.py``)."""
import ctypes
import os
import subprocess
import tempfile
from pathlib import Path

from tritonllm.engine import kernel_build

# What each weight type's panel layout (the one this tree's kernels read) first brought into
# cpu_kernels.cpp: a revision without it reads that type's weights as plain [N, K] rows.
PANEL_MARKERS = {"fp32": "PANEL", "int8": "FLUSH_PAIRS", "int4": "sub_scales"}


def source_of(revision: str, tree: Path) -> str:
    """``cpu_kernels.cpp`` at a git revision of ``tree``, or from a file path."""
    path = Path(revision)
    if path.is_file():
        return path.read_text()
    return subprocess.run(
        ["git", "-C", str(tree), "show", f"{revision}:tritonllm/engine/csrc/cpu_kernels.cpp"],
        check=True, capture_output=True, text=True).stdout


def in_panels(text: str, weights: str) -> bool:
    """Whether the kernels in ``text`` read ``weights`` (fp32, int8, int4) in panels."""
    return PANEL_MARKERS[weights] in text


def compile_library(text: str) -> ctypes.CDLL:
    """``text`` compiled with this tree's flags for the build this CPU runs, loaded, with the
    argument types of every entry point it has."""
    work = Path(tempfile.mkdtemp())
    (work / "old.cpp").write_text(text)
    subprocess.run([os.environ.get("CXX", "g++"), *kernel_build.FLAGS,
                    *kernel_build.chosen_isa().compile_flags, str(work / "old.cpp"), "-o",
                    str(work / "old.so")], check=True, stderr=subprocess.DEVNULL)
    lib = ctypes.CDLL(str(work / "old.so"))
    for name, argtypes in kernel_build.SIGNATURES.items():
        if hasattr(lib, name):
            getattr(lib, name).argtypes = argtypes
            getattr(lib, name).restype = None
    return lib
