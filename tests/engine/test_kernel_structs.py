"""The C structs the kernels take (``LayerC``, ``StepC`` in csrc/cpu_kernels.cpp) and their
ctypes mirrors in cpu_kernels.py declare the same fields, in the same order, of the same size:
a field added on one side only would shift every field after it."""

from __future__ import annotations

import ctypes
import re

import pytest

from tritonllm.engine import cpu_kernels
from tritonllm.engine.kernel_build import SOURCE

C_SIZES = {"int64_t": 8, "int32_t": 4, "int": 4, "float": 4}


def c_fields(struct: str) -> list[tuple[str, int]]:
    """(name, size) of each field of ``struct`` as the C++ source declares it."""
    body = re.search(rf"struct {struct} \{{(.*?)\}};", SOURCE.read_text(), re.S).group(1)
    fields = []
    for declaration in re.sub(r"//[^\n]*", "", body).split(";"):
        declaration = declaration.strip()
        if not declaration:
            continue
        kind, names = re.match(r"((?:const )?[\w]+\s*\*?)\s*(.*)", declaration).groups()
        size = 8 if "*" in kind else C_SIZES[kind.replace("const", "").strip()]
        fields += [(name.strip(), size) for name in names.split(",")]
    return fields


@pytest.mark.parametrize("struct", [cpu_kernels.LayerC, cpu_kernels.StepC])
def test_ctypes_mirror_matches_the_cpp_struct(struct):
    mine = [(name, ctypes.sizeof(kind)) for name, kind in struct._fields_]
    assert mine == c_fields(struct.__name__)
