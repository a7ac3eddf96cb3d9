"""Make sure the profile's Hugging Face checkpoint is on disk, downloading it once if asked.

Secrets stay out of images and manifests: the token is read by ``huggingface_hub`` itself from
``HF_TOKEN`` (an env var, e.g. from a Kubernetes Secret) or from the file named by
``HF_TOKEN_PATH`` (a mounted secret). This module never reads, prints or stores it.
"""

from __future__ import annotations

import sys
from pathlib import Path


def has_checkpoint(model_dir: Path) -> bool:
    return (Path(model_dir) / "config.json").is_file()


def ensure_model(model_dir: Path, hf_repo: str | None) -> Path:
    """``model_dir`` when it holds a checkpoint; else download ``hf_repo`` into it.

    FileNotFoundError names both ways out when there is neither a checkpoint nor a repo id.
    """
    model_dir = Path(model_dir)
    if has_checkpoint(model_dir):
        return model_dir
    if not hf_repo:
        raise FileNotFoundError(
            f"model.dir: {model_dir} holds no Hugging Face checkpoint (no config.json); mount "
            "it there, or set TRITONLLM_HF_REPO (e.g. meta-llama/Llama-3.1-8B-Instruct) and "
            "HF_TOKEN / HF_TOKEN_PATH to download it once")
    from huggingface_hub import snapshot_download

    print(f"[tritonllm] downloading {hf_repo} into {model_dir} (once; the volume keeps it)",
          file=sys.stderr, flush=True)
    snapshot_download(hf_repo, local_dir=str(model_dir),
                      allow_patterns=["*.json", "*.safetensors", "tokenizer*", "*.model"])
    if not has_checkpoint(model_dir):
        raise FileNotFoundError(f"model.dir: {hf_repo} downloaded into {model_dir} but it has "
                                "no config.json; is it a Hugging Face transformers checkpoint?")
    return model_dir
