"""``tritonllm deploy gpu-check`` (``make gpu-check``): the GPU acceptance run.

On a GPU node with the GPU image's stack (TensorRT-LLM, ``trtllm-build``, tritonserver with the
``tensorrtllm`` backend) and a checkout of this repository, for each mode (fp16, then fp8 on GPUs
that have it) it writes a build profile for the default model (SmolLM2-135M, tp=1), serves it with
``tritonllm deploy entrypoint`` (build, cache, render, launch: what the image runs), and points
the CPU twin's own live tests at that server (``TRITONLLM_TEST_SERVER``, see tests/conftest.py):
greedy equality with transformers, streaming equality, tensorrtllm_backend's clients on the wire,
and the OpenAI frontend. It ends with one summary line and exit status 0 only if every check
passed. Where the node cannot run it, it says what is missing and exits with
``EXIT_NOT_A_GPU_NODE`` before starting anything.

Greedy equality with transformers (fp32) is checked for fp16 only: fp8 weights change the
arg-max of a small model, so fp8 runs the checks that do not compare with transformers.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import yaml

EXIT_NOT_A_GPU_NODE = 3
TEST_SERVER_ENV = "TRITONLLM_TEST_SERVER"  # read by tests/conftest.py
READY_TIMEOUT_S = 420  # the engine build (seconds for SmolLM2) and the server's start
TESTS_ROOT = Path(__file__).resolve().parents[2] / "tests"

GREEDY_TESTS = (
    "tests/serve/test_serving.py::test_greedy_http_and_grpc_equal_transformers",
    "tests/compat/test_trtllm_clients.py::test_end_to_end_grpc_client",
    "tests/openai/test_live.py::test_chat_greedy_equals_transformers",
)
STREAM_TESTS = (
    "tests/serve/test_serving.py::test_streaming_equals_non_streaming_with_emoji_and_cjk",
    "tests/serve/test_serving.py::test_leading_spaces_survive_streaming",
    "tests/serve/test_serving.py::test_stop_words_end_generation",
    "tests/openai/test_live.py::test_chat_stream_equals_whole_with_usage",
    "tests/openai/test_live.py::test_models_lists_the_served_model",
)
MODES = {"fp16": GREEDY_TESTS + STREAM_TESTS, "fp8": STREAM_TESTS}


@dataclass(frozen=True)
class ModeResult:
    mode: str
    passed: bool
    detail: str
    seconds: float


def missing_requirements(facts) -> list[str]:
    """What this node (``facts``: :class:`~tritonllm.deploy.node.NodeFacts`) lacks for the check
    (empty: it can run)."""
    problems = []
    if shutil.which("trtllm-build") is None:
        problems.append("trtllm-build is not on PATH (TensorRT-LLM is not installed)")
    if shutil.which("tritonserver") is None and not Path("/opt/tritonserver/bin").is_dir():
        problems.append("no tritonserver with the tensorrtllm backend (/opt/tritonserver)")
    if facts.gpu_count == 0:
        problems.append("no NVIDIA GPU is visible (nvidia-smi lists none)")
    if not TESTS_ROOT.is_dir():
        problems.append(f"the checks run this checkout's tests; {TESTS_ROOT} is missing")
    return problems


def profile_for(mode: str, model_dir: Path, gpu: str, openai_port: int = 0) -> dict:
    """The build profile of one mode: the default model, tp=1, limits the tests need."""
    return {
        "name": f"gpu-check-smollm2-{mode}",
        "model": {"dir": str(model_dir)},
        "dtype": "float16",
        "quantization": {"mode": "fp8", "kv_cache": "fp8"} if mode == "fp8" else {},
        "parallel": {"tp_size": 1, "pp_size": 1},
        "limits": {"max_batch_size": 8, "max_input_len": 1024, "max_seq_len": 2048,
                   "max_num_tokens": 2048},
        "target": {"gpu": gpu},
        "serving": {"enable_kv_cache_reuse": True, "enable_chunked_context": True,
                    "openai_port": openai_port},
    }


def run(work_dir: Path, modes: tuple[str, ...] | None = None) -> int:
    from tritonllm.build.planning.gpus import device_from_cuda_name
    from tritonllm.deploy.node import detect
    from tritonllm.model_source import default_model_dir

    facts = detect()
    problems = missing_requirements(facts)
    if problems:
        print("gpu-check: cannot run here:\n  " + "\n  ".join(problems), file=sys.stderr)
        return EXIT_NOT_A_GPU_NODE
    device = device_from_cuda_name(facts.gpu_name or "")
    if device is None:
        print(f"gpu-check: unknown GPU {facts.gpu_name!r}", file=sys.stderr)
        return EXIT_NOT_A_GPU_NODE
    chosen = modes or tuple(m for m in MODES if m != "fp8" or device.supports_fp8)
    results = [check_mode(m, work_dir, default_model_dir(), device.name) for m in chosen]
    print(summary(results, device.name))
    return 0 if all(r.passed for r in results) else 1


def check_mode(mode: str, work_dir: Path, model_dir: Path, gpu: str) -> ModeResult:
    from tritonllm.serve.launcher import Ports, free_port

    start = time.monotonic()
    root = work_dir / mode
    root.mkdir(parents=True, exist_ok=True)
    profile = root / "profile.yaml"
    ports, openai_port = Ports.free(), free_port()
    profile.write_text(yaml.safe_dump(profile_for(mode, model_dir, gpu, openai_port)))
    server = _start_entrypoint(profile, ports, root)
    try:
        if not _wait_ready(ports.http, server):
            return ModeResult(mode, False, f"not ready (see {root / 'entrypoint.log'})",
                              time.monotonic() - start)
        outcome = _run_tests(MODES[mode], ports, openai_port, model_dir, root)
        return ModeResult(mode, outcome.returncode == 0, _last_line(outcome.stdout),
                          time.monotonic() - start)
    finally:
        _stop(server)


def summary(results: list[ModeResult], gpu: str) -> str:
    parts = [f"{r.mode} {'PASS' if r.passed else 'FAIL'} ({r.detail}, {r.seconds:.0f} s)"
             for r in results]
    verdict = "PASS" if results and all(r.passed for r in results) else "FAIL"
    return f"gpu-check {verdict} on {gpu}: " + "; ".join(parts)


def test_server_env(ports, openai_port: int, model_dir: Path) -> str:
    """``TRITONLLM_TEST_SERVER``: the running server the live tests talk to."""
    return json.dumps({"http": f"127.0.0.1:{ports.http}", "grpc": f"127.0.0.1:{ports.grpc}",
                       "metrics": f"127.0.0.1:{ports.metrics}",
                       "openai": f"http://127.0.0.1:{openai_port}", "model_dir": str(model_dir)})


def _start_entrypoint(profile: Path, ports, root: Path) -> subprocess.Popen:
    argv = [sys.executable, "-m", "tritonllm.cli", "deploy", "entrypoint", "--profile",
            str(profile), "--http-port", str(ports.http), "--grpc-port", str(ports.grpc),
            "--metrics-port", str(ports.metrics)]
    with open(root / "entrypoint.log", "w") as log:
        return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)


def _wait_ready(http_port: int, server: subprocess.Popen) -> bool:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline and server.poll() is None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/v2/health/ready",
                                        timeout=5) as response:
                if response.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(2)
    return False


def _run_tests(tests, ports, openai_port: int, model_dir: Path, root: Path):
    env = {**os.environ, TEST_SERVER_ENV: test_server_env(ports, openai_port, model_dir)}
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           *tests], cwd=TESTS_ROOT.parent, env=env, capture_output=True,
                          text=True, timeout=600)


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1].strip("= ") if lines else "no output"


def _stop(server: subprocess.Popen) -> None:
    if server.poll() is None:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=120)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
