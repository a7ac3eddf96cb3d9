"""One TensorRT-LLM version everywhere: the Dockerfile's GPU base, the GPU pin set and every
version that the docs, profiles and code state agree with tritonllm.gpu_stack."""

from __future__ import annotations

import re
from pathlib import Path

from tritonllm import gpu_stack

ROOT = Path(__file__).resolve().parents[1]
# "TensorRT-LLM 1.2.1", "TensorRT-LLM v1.1.x", "trtllm-build 1.1.0", "TensorRT-LLM 1.2"
CLAIM = re.compile(r"(?:TensorRT-LLM|trtllm-build)\s+v?(\d+\.\d+(?:\.(?:\d+|x))?)\b")
TEXT_SUFFIXES = {".py", ".md", ".yaml", ".yml", ".txt", ".toml", ".cfg", ""}
# What users read and run; tests keep other versions as data on purpose (upgrades, rollbacks).
SCANNED = ("README.md", "SECURITY.md", "Dockerfile", "Makefile", "docs", "deploy", "build",
           "requirements", "model_repository", "tritonllm", "client", "loadtest")


def text_files():
    for top in SCANNED:
        root = ROOT / top
        for path in [root] if root.is_file() else root.rglob("*"):
            if path.is_file() and path.suffix in TEXT_SUFFIXES and "__pycache__" not in \
                    path.parts and path != Path(gpu_stack.__file__):
                yield path


def agrees(version: str) -> bool:
    target = gpu_stack.TENSORRT_LLM_VERSION
    major_minor = ".".join(target.split(".")[:2])
    return version in (target, major_minor, f"{major_minor}.x")


def test_the_dockerfile_builds_on_the_pinned_image():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert f"ARG TRITON_IMAGE={gpu_stack.TRITON_GPU_IMAGE}\n" in dockerfile


def test_every_stated_version_is_the_pinned_one():
    wrong = []
    for path in text_files():
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            for version in CLAIM.findall(line):
                if not agrees(version):
                    wrong.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert wrong == [], "\n".join(wrong)


def test_the_check_finds_a_stale_claim():
    assert CLAIM.findall("built with TensorRT-LLM 1.2.1 engines") == ["1.2.1"]
    assert not agrees("1.2.1") and not agrees("1.2.x") and agrees("1.1.x")


def test_the_gpu_pin_set_names_the_release_and_its_transformers():
    pins = (ROOT / "requirements" / "gpu-image.txt").read_text()
    assert f"TensorRT-LLM {gpu_stack.TENSORRT_LLM_VERSION}" in pins
    assert gpu_stack.TRITON_GPU_IMAGE in pins
    assert re.search(r"^transformers==4\.56\.0$", pins, re.M)  # TensorRT-LLM 1.1.0's pin
    assert re.search(r"^nvidia-modelopt\[torch\]==0\.37\.\d+$", pins, re.M)  # ~=0.37.0
