"""OpenVINO GenAI as a peer: the checkpoint converted to OpenVINO IR, served with GenAI's
continuous batching behind a small OpenAI-compatible server of ours.

Installed into ``<peers dir>/openvino/venv``: ``openvino-genai`` (it brings ``openvino`` and
``openvino-tokenizers`` of the same release), and for the conversion ``optimum-intel[openvino]``
with ``nncf`` (weight compression), torch 2.13 CPU and transformers 4.57.6; then the
``torchvision`` optimum-intel pulls in is uninstalled (PyPI's wheel is built against CUDA torch,
and transformers fails to import next to CPU torch while it is there; nothing here needs it).

The HF checkpoint is converted once per weight format by ``optimum-cli export openvino --task
text-generation-with-past`` (the IR with its KV cache as state, plus the tokenizer and
detokenizer as OpenVINO models) into ``openvino/ir/<checkpoint key>/<weights>/``:

- ``fp32``: the weights as they are, uncompressed.
- ``int8``: NNCF weight-only compression of every weight matrix (embedding and LM head
  included) to 8 bits, asymmetric (``int8_asym``), one scale and zero point per output channel.
- ``int4``: NNCF weight-only compression with :data:`INT4_ARGS`: ``int4_sym`` (4 bits, no zero
  point), ``group_size`` 64 (64 input channels share one scale), ``ratio`` 1.0 (every eligible
  matrix in int4), data-free (no dataset: no AWQ, scale estimation or GPTQ). The embedding and
  the LM head are not eligible (``all_layers`` False) and take the backup mode ``int8_asym``
  (per channel). On SmolLM2-135M: 210 matrices (79% of the weights) in int4, the tied
  embedding / LM head (21%) in int8. Groups of 64 divide SmolLM2's widths (576, 1536); the
  usual 128 does not, and NNCF refuses such a matrix.

Activations are f32 whatever the weights (the server sets the CPU plugin's
``INFERENCE_PRECISION_HINT`` to f32; it would pick bf16 on a CPU with AVX512-BF16), and so is
the KV cache (``KV_CACHE_PRECISION``; the plugin's default is u8), so the weight format is the
only difference between the three runs and to ours in fp32.

The server (``peer_servers/openvino_server.py``, run with the peer's own python: it imports only
the standard library and ``openvino_genai``) answers ``GET /health``, ``GET /v1/models`` and a
streamed ``POST /v1/completions`` with ``min_tokens`` and ``ignore_eos``, so lengths are exact.

Everything here is pure: paths, command lines and payloads.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from tritonllm.bench.peer_steps import (SERVED_MODEL, Step, all_done, checkpoint_key, pip,
                                       venv_step)
from tritonllm.loadtest.providers import OpenAIStreamProvider
from tritonllm.loadtest.workloads import Prompt

OPENVINO_GENAI_VERSION = "2026.4.1.0"
# optimum-intel 2.2.0 asks for openvino>=2026.0, nncf>=3.3 and transformers<5.6; torch is the
# CPU build on this machine's disk (pip's find-links), as for llama.cpp's converter.
OPENVINO_DEPS = (f"openvino-genai=={OPENVINO_GENAI_VERSION}", "optimum-intel[openvino]==2.2.0",
                 "optimum==2.3.0", "nncf==3.4.0", "torch==2.13.0", "transformers==4.57.6")
OPENVINO_WEIGHTS = ("fp32", "int8", "int4")
INT4_ARGS = ("--sym", "--group-size", "64", "--ratio", "1.0")
SERVER_SCRIPT = Path(__file__).resolve().parent / "peer_servers" / "openvino_server.py"


@dataclass(frozen=True)
class OpenVinoPeer:
    """OpenVINO GenAI's continuous batching on the checkpoint converted to IR with ``weights``
    (see the module docstring), at most ``max_num_seqs`` running requests, a KV cache of
    ``cache_gb`` GB."""

    root: Path
    weights: str = "fp32"
    threads: int = 2
    max_num_seqs: int = 8
    cache_gb: int = 2
    name = "openvino"

    def __post_init__(self) -> None:
        if self.weights not in OPENVINO_WEIGHTS:
            raise ValueError(f"weights: must be one of {', '.join(OPENVINO_WEIGHTS)}, "
                             f"got {self.weights!r}")

    @property
    def label(self) -> str:
        return f"OpenVINO GenAI {self.weights.upper()} IR"

    @property
    def venv(self) -> Path:
        return self.root / "venv"

    def install_steps(self) -> list[Step]:
        return [
            venv_step(self.venv),
            Step(f"pip install openvino-genai=={OPENVINO_GENAI_VERSION}, optimum-intel and nncf "
                 "(torch 2.13 CPU)", pip(self.venv, "install", *OPENVINO_DEPS), self.root,
                 self.venv / "bin" / "optimum-cli"),
            Step("uninstall torchvision (a CUDA build: it breaks transformers' import next to "
                 "CPU torch)", pip(self.venv, "uninstall", "-y", "torchvision"), self.root,
                 self.root / f"installed-{OPENVINO_GENAI_VERSION}", marker=True),
        ]

    def installed(self) -> bool:
        return all_done(self.install_steps())

    def ir_dir(self, model_dir: Path) -> Path:
        """One IR dir per checkpoint dir (its name and a hash of its resolved path) and weight
        format."""
        return self.root / "ir" / checkpoint_key(model_dir) / self.weights

    def export_args(self) -> tuple[str, ...]:
        """``optimum-cli export openvino``'s weight options for :attr:`weights`."""
        return ("--weight-format", self.weights, *(INT4_ARGS if self.weights == "int4" else ()))

    def prepare_steps(self, model_dir: Path) -> list[Step]:
        step = Step(f"convert {model_dir} to OpenVINO IR, {self.weights} weights", (),
                    self.root, self.ir_dir(model_dir), atomic=True)
        argv = (str(self.venv / "bin" / "optimum-cli"), "export", "openvino",
                "--model", str(model_dir), "--task", "text-generation-with-past",
                *self.export_args(), str(step.partial))
        return [dataclasses.replace(step, argv=argv)]

    def server_command(self, model_dir: Path, port: int) -> list[str]:
        return [str(self.venv / "bin" / "python"), str(SERVER_SCRIPT),
                "--model", str(self.ir_dir(model_dir)), "--served-model-name", SERVED_MODEL,
                "--host", "127.0.0.1", "--port", str(port), "--threads", str(self.threads),
                "--max-num-seqs", str(self.max_num_seqs), "--cache-gb", str(self.cache_gb)]

    def server_env(self) -> dict[str, str]:
        return {}

    def body(self, prompt: Prompt, request_id: str) -> dict:
        """The OpenAI completion body with ``min_tokens`` and ``ignore_eos``: exact lengths."""
        return {**OpenAIStreamProvider(SERVED_MODEL).body(prompt, request_id),
                "ignore_eos": True}
