"""Engine manifests: what an engine directory was built from, with what, and for which GPU.

The engine stage writes ``<engine_dir>/tritonllm-manifest.json`` beside TensorRT-LLM's
``config.json`` and ``rank<N>.engine`` files. Serving reads it before loading anything and
refuses a mismatched engine with one clear sentence, instead of TensorRT's deserialization
error at load time (a TensorRT engine only loads with the TensorRT-LLM version and the GPU
architecture it was built for).

Use from an entrypoint::

    from tritonllm.build.manifest import check_engine_dir
    reason = check_engine_dir(engine_dir, tensorrt_llm_version=trtllm.__version__,
                              compute_capability="9.0", gpu_count=4)
    if reason:
        sys.exit(f"refusing to serve: {reason}")

Every ``check_*`` argument is optional: only what is given is compared. The module imports
nothing heavy (json and dataclasses).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path

MANIFEST_NAME = "tritonllm-manifest.json"
SCHEMA = 1


@dataclass(frozen=True)
class EngineManifest:
    """``profile_hash``: ``profile.engine_hash`` of the profile built (model, dtype,
    quantization, parallelism, limits, target, engine options; not the serving options).
    ``compute_capability``: "major.minor" of the GPU that built it ("9.0" for H100)."""

    profile_name: str
    profile_hash: str
    tensorrt_llm_version: str
    gpu_name: str
    compute_capability: str
    tp_size: int
    pp_size: int
    dtype: str
    quant_algo: str | None
    kv_cache_quant_algo: str | None
    max_batch_size: int
    max_input_len: int
    max_seq_len: int
    max_num_tokens: int
    created: str = ""
    schema: int = SCHEMA

    @property
    def world_size(self) -> int:
        return self.tp_size * self.pp_size


def write_manifest(engine_dir: str | Path, manifest: EngineManifest) -> Path:
    path = Path(engine_dir) / MANIFEST_NAME
    path.write_text(json.dumps(asdict(manifest), indent=2) + "\n")
    return path


def read_manifest(engine_dir: str | Path) -> EngineManifest:
    """FileNotFoundError when absent; ValueError for an unknown schema or missing keys."""
    path = Path(engine_dir) / MANIFEST_NAME
    if not path.is_file():
        raise FileNotFoundError(f"engine manifest: {path} does not exist; was this engine "
                                "built with `tritonllm build`?")
    data = json.loads(path.read_text())
    if data.get("schema") != SCHEMA:
        raise ValueError(f"engine manifest: {path} has schema {data.get('schema')!r}, "
                         f"expected {SCHEMA}")
    names = {f.name for f in fields(EngineManifest)}
    missing = sorted(n for n in names if n not in data and n != "created")
    if missing:
        raise ValueError(f"engine manifest: {path} lacks {', '.join(missing)}")
    return EngineManifest(**{k: v for k, v in data.items() if k in names})


def check_manifest(manifest: EngineManifest, *, profile_hash: str | None = None,
                   tensorrt_llm_version: str | None = None,
                   compute_capability: str | None = None,
                   gpu_count: int | None = None) -> str | None:
    """None when the engine fits; otherwise the first mismatch, as a sentence naming the fix."""
    m = manifest
    if profile_hash is not None and profile_hash != m.profile_hash:
        return (f"engine was built from profile {m.profile_name!r} (hash {m.profile_hash}) but "
                f"the profile now hashes to {profile_hash}; rebuild it with "
                "`tritonllm build PROFILE`")
    if tensorrt_llm_version is not None and tensorrt_llm_version != m.tensorrt_llm_version:
        return (f"engine was built with TensorRT-LLM {m.tensorrt_llm_version} but this runtime "
                f"has {tensorrt_llm_version}; engines only load in the version that built them: "
                "rebuild the engine here or use the matching container")
    if compute_capability is not None and compute_capability != m.compute_capability:
        return (f"engine was built on {m.gpu_name} (compute capability "
                f"{m.compute_capability}) but this GPU has compute capability "
                f"{compute_capability}; rebuild the engine on this GPU type")
    if gpu_count is not None and gpu_count < m.world_size:
        return (f"engine needs {m.world_size} GPUs (tp_size={m.tp_size} x "
                f"pp_size={m.pp_size}) but {gpu_count} are visible")
    return None


def check_engine_dir(engine_dir: str | Path, **expected) -> str | None:
    """``read_manifest`` + ``check_manifest``; a missing or unreadable manifest is a reason too."""
    try:
        manifest = read_manifest(engine_dir)
    except (FileNotFoundError, ValueError, json.JSONDecodeError) as exc:
        return str(exc)
    return check_manifest(manifest, **expected)
