"""The one home of code that differs between the two transformers lines we run under.

The CPU twin runs transformers 5 (pyproject.toml); the GPU image runs what TensorRT-LLM 1.1.0
pins, transformers 4.56.0 (requirements/gpu-image.txt). Files written by one are read by the
other: the default model directory and the tokenizer copies in build outputs are written on CPU
machines with transformers 5 and read in the GPU image with 4.56.

Known differences, each handled here and tested under both sets (tests/test_hf_compat.py):

- transformers 5 saves ``"tokenizer_class": "TokenizersBackend"``; 4.56 has no such class
  ("Tokenizer class TokenizersBackend does not exist"). :func:`write_portable_tokenizer_config`
  rewrites it to ``PreTrainedTokenizerFast``, which both lines read (5 treats it as an alias of
  its fast backend); :func:`load_tokenizer` also loads directories written before that fix.
- transformers 5 saves ``extra_special_tokens`` as a list; 4.56 expects a mapping there and
  reads a list as ``additional_special_tokens``, the key both lines read.
- transformers 5 saves the RoPE base inside ``"rope_parameters"`` in config.json; 4.56 reads
  only a top-level ``"rope_theta"`` and silently falls back to 10000 (SmolLM2 needs 100000: a
  wrong model, not an error). :func:`portable_model_config` adds the top-level keys, which 5
  reads too. Building a ``LlamaConfig`` in code has the same split: :func:`llama_rope_kwargs`.

:func:`write_portable_checkpoint` applies both rewrites to a checkpoint directory.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

TOKENIZER_CONFIG = "tokenizer_config.json"
PORTABLE_TOKENIZER_CLASS = "PreTrainedTokenizerFast"
# Classes transformers 5 writes that 4.56 does not know; all are fast (tokenizer.json) backends.
_V5_ONLY_CLASSES = frozenset({"TokenizersBackend"})
# The files a tokenizer may be made of (never the weights).
_TOKENIZER_FILE_PREFIXES = ("tokenizer", "special_tokens_map", "added_tokens", "chat_template",
                            "vocab", "merges", "spiece", "config.json")


def transformers_major() -> int:
    import transformers

    return int(transformers.__version__.split(".")[0])


def portable_tokenizer_config(config: dict) -> dict:
    """``config`` (a tokenizer_config.json's content) rewritten so both lines read it."""
    out = dict(config)
    if out.get("tokenizer_class") in _V5_ONLY_CLASSES:
        out["tokenizer_class"] = PORTABLE_TOKENIZER_CLASS
    extra = out.get("extra_special_tokens")
    if isinstance(extra, list):
        del out["extra_special_tokens"]
        merged = list(out.get("additional_special_tokens") or [])
        out["additional_special_tokens"] = merged + [t for t in extra if t not in merged]
    return out


def portable_model_config(config: dict) -> dict:
    """``config`` (a config.json's content) with the RoPE keys 4.56 reads added beside 5's."""
    out = dict(config)
    rope = dict(out.get("rope_parameters") or {})
    if "rope_theta" in rope and "rope_theta" not in out:
        out["rope_theta"] = rope.pop("rope_theta")
        if rope.get("rope_type", "default") != "default" and "rope_scaling" not in out:
            out["rope_scaling"] = rope
    return out


def write_portable_checkpoint(model_dir: str | os.PathLike) -> bool:
    """Make ``model_dir``'s config.json and tokenizer_config.json readable by both lines (in
    place, atomically; idempotent). Returns True when a file changed."""
    changed = _rewrite_json(Path(model_dir) / "config.json", portable_model_config)
    return write_portable_tokenizer_config(model_dir) or changed


def write_portable_tokenizer_config(tokenizer_dir: str | os.PathLike) -> bool:
    """Rewrite ``tokenizer_dir``'s tokenizer_config.json in place (atomically) so that both
    transformers lines load the directory. Returns True when the file changed; a directory
    without the file, or already portable, is left alone."""
    return _rewrite_json(Path(tokenizer_dir) / TOKENIZER_CONFIG, portable_tokenizer_config)


def _rewrite_json(path: Path, transform) -> bool:
    if not path.is_file():
        return False
    config = json.loads(path.read_text(encoding="utf-8"))
    portable = transform(config)
    if portable == config:
        return False
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".json")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(portable, f, indent=2, ensure_ascii=False)
        f.write("\n")
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
    return True


def llama_rope_kwargs(rope_parameters: dict) -> dict:
    """``LlamaConfig`` keyword arguments for ``rope_parameters`` (transformers 5's form:
    ``{"rope_type", "rope_theta", ...scaling keys}``) under the installed transformers; 4.56
    ignores ``rope_parameters`` and would use a RoPE base of 10000."""
    if transformers_major() >= 5:
        return {"rope_parameters": dict(rope_parameters)}
    legacy = portable_model_config({"rope_parameters": dict(rope_parameters)})
    return {"rope_theta": legacy["rope_theta"], "rope_scaling": legacy.get("rope_scaling")}


def rope_theta_of(config) -> float:
    """The RoPE base of a transformers config object under either line."""
    rope = getattr(config, "rope_parameters", None) or {}
    return float(rope.get("rope_theta") or config.rope_theta)


def load_tokenizer(model_dir: str | os.PathLike):
    """The Hugging Face tokenizer of ``model_dir``, under either transformers line.

    ``AutoTokenizer`` when the directory's tokenizer_config.json is readable as it stands;
    otherwise (written by transformers 5, read by 4.56) the portable form of that config is
    applied in memory: same vocabulary, special tokens and chat template. The directory is never
    modified here (it may be read-only, e.g. a mounted volume).
    """
    from transformers import AutoTokenizer

    config = _read_config(model_dir)
    if config is None or portable_tokenizer_config(config) == config or transformers_major() >= 5:
        return AutoTokenizer.from_pretrained(str(model_dir))
    return _load_with_config(model_dir, portable_tokenizer_config(config))


def _read_config(model_dir) -> dict | None:
    path = Path(model_dir) / TOKENIZER_CONFIG
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _load_with_config(model_dir, config: dict):
    """Load a copy of the tokenizer files with ``config`` as their tokenizer_config.json."""
    import shutil

    from transformers import AutoTokenizer

    with tempfile.TemporaryDirectory(prefix="tritonllm-tokenizer-") as tmp:
        for item in Path(model_dir).iterdir():
            if item.is_file() and item.name.startswith(_TOKENIZER_FILE_PREFIXES):
                shutil.copy2(item, tmp)
        (Path(tmp) / TOKENIZER_CONFIG).write_text(json.dumps(config), encoding="utf-8")
        return AutoTokenizer.from_pretrained(tmp)
