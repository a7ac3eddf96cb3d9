"""What this node offers an engine: the TensorRT-LLM version installed and the GPUs visible.

Both decide whether a cached engine can be loaded (TensorRT engines load only in the
TensorRT-LLM version and on the GPU architecture that built them). Detection is cheap and
imports nothing heavy: the version is read from TensorRT-LLM's ``version.py``, the GPUs
from ``nvidia-smi --query-gpu=name,compute_cap --format=csv,noheader``.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

NVIDIA_SMI_QUERY = ["nvidia-smi", "--query-gpu=name,compute_cap", "--format=csv,noheader"]


@dataclass(frozen=True)
class NodeFacts:
    """``compute_capability`` is "major.minor" ("9.0" for H100), the same for every GPU."""

    tensorrt_llm_version: str | None
    gpu_name: str | None
    compute_capability: str | None
    gpu_count: int

    def __post_init__(self) -> None:
        if self.gpu_count < 0:
            raise ValueError(f"gpu_count: must be >= 0, got {self.gpu_count}")
        if self.gpu_count and not (self.gpu_name and self.compute_capability):
            raise ValueError("gpu_name, compute_capability: required when gpu_count > 0")

    @property
    def sm_tag(self) -> str:
        """``sm90`` for compute capability 9.0: names engine directories per GPU architecture."""
        return "sm" + (self.compute_capability or "none").replace(".", "")


def parse_nvidia_smi(text: str) -> tuple[str | None, str | None, int]:
    """(name, compute capability, count) from the query's CSV lines; ValueError for a mix of
    GPU architectures (one engine cannot serve both)."""
    rows = [line.rsplit(",", 1) for line in text.strip().splitlines() if line.strip()]
    if not rows:
        return None, None, 0
    if any(len(row) != 2 for row in rows):
        raise ValueError(f"nvidia-smi: expected 'name, compute_cap' lines, got {text!r}")
    caps = {cap.strip() for _, cap in rows}
    if len(caps) > 1:
        raise ValueError(f"GPUs: mixed compute capabilities {sorted(caps)} on one node; an "
                         "engine is built for one architecture (set CUDA_VISIBLE_DEVICES)")
    return rows[0][0].strip(), caps.pop(), len(rows)


def tensorrt_llm_version() -> str | None:
    """``tensorrt_llm.__version__`` (what the build writes into the manifest), read from the
    package's ``version.py`` without importing it (an import loads CUDA); else the installed
    distribution's version; None when TensorRT-LLM is absent."""
    spec = importlib.util.find_spec("tensorrt_llm")
    if spec is None:
        return None
    for location in spec.submodule_search_locations or ():
        version_file = Path(location) / "version.py"
        if version_file.is_file():
            found = re.search(r"""^__version__\s*=\s*["']([^"']+)["']""",
                              version_file.read_text(), re.M)
            if found:
                return found.group(1)
    try:
        return importlib.metadata.version("tensorrt_llm")
    except importlib.metadata.PackageNotFoundError:
        return None


def detect() -> NodeFacts:
    """This node's facts; no GPU (or no nvidia-smi) gives ``gpu_count == 0``."""
    name = cap = None
    count = 0
    if shutil.which(NVIDIA_SMI_QUERY[0]):
        out = subprocess.run(NVIDIA_SMI_QUERY, capture_output=True, text=True, timeout=60)
        if out.returncode == 0:
            name, cap, count = parse_nvidia_smi(out.stdout)
    return NodeFacts(tensorrt_llm_version(), name, cap, count)
