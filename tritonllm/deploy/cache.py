"""The engine cache: where a profile's engines live, and whether they can be reused.

Layout under the tritonllm cache (``$TRITONLLM_CACHE``, a persistent volume in a cluster)::

    engines/<profile name>/trtllm-<version>-sm<NN>/
        build/               the build pipeline's output_dir (checkpoints, engines, manifest)
        model_repository/    the Triton repository rendered for this engine
        .lock                held while one process builds or renders

One directory per TensorRT-LLM version and GPU architecture: upgrading the container or
scheduling onto another GPU type builds next to the old engines instead of over them, so a
rollback (or a second node pool) finds its engines intact.

Inside a directory the engine manifest (tritonllm.build.manifest) decides:

- ``build``: no manifest yet (first start, or a build that never finished);
- ``rebuild``: a manifest that does not match (the profile changed, or files were copied from
  another version/GPU), or rank engine files missing; the stale engine directory is removed;
- ``reuse``: manifest matches the profile hash, TensorRT-LLM version and compute capability,
  and every ``rank<N>.engine`` is present.
"""

from __future__ import annotations

import contextlib
import fcntl
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tritonllm.build.manifest import MANIFEST_NAME, check_engine_dir

REUSE, BUILD, REBUILD = "reuse", "build", "rebuild"


@dataclass(frozen=True)
class CacheDecision:
    """``engine_dir``: the directory holding the manifest (None when there is none)."""

    action: str
    reason: str
    engine_dir: Path | None = None

    def __post_init__(self) -> None:
        if self.action not in (REUSE, BUILD, REBUILD):
            raise ValueError(f"action: must be reuse, build or rebuild, got {self.action!r}")


def engine_root(cache: Path, profile_name: str, tensorrt_llm_version: str, sm_tag: str) -> Path:
    return Path(cache) / "engines" / profile_name / f"trtllm-{tensorrt_llm_version}-{sm_tag}"


def find_engine_dir(build_dir: Path) -> Path | None:
    """The one directory under ``build_dir`` holding an engine manifest, or None."""
    found = sorted(p.parent for p in Path(build_dir).rglob(MANIFEST_NAME))
    if len(found) > 1:
        raise ValueError(f"engine cache: several engine manifests under {build_dir}: "
                         f"{', '.join(map(str, found))}; remove the stale ones")
    return found[0] if found else None


def decide(build_dir: Path, *, profile_hash: str, tensorrt_llm_version: str,
           compute_capability: str, world_size: int) -> CacheDecision:
    """Reuse, build or rebuild the engines under ``build_dir`` (see the module docstring)."""
    engine_dir = find_engine_dir(build_dir) if Path(build_dir).is_dir() else None
    if engine_dir is None:
        return CacheDecision(BUILD, f"no engine built yet under {build_dir}")
    reason = check_engine_dir(engine_dir, profile_hash=profile_hash,
                              tensorrt_llm_version=tensorrt_llm_version,
                              compute_capability=compute_capability)
    if reason is None:
        reason = _missing_files(engine_dir, world_size)
    if reason:
        return CacheDecision(REBUILD, reason, engine_dir)
    return CacheDecision(REUSE, f"engine at {engine_dir} matches profile hash {profile_hash}, "
                                f"TensorRT-LLM {tensorrt_llm_version}, compute capability "
                                f"{compute_capability}", engine_dir)


def _missing_files(engine_dir: Path, world_size: int) -> str | None:
    names = ["config.json", *(f"rank{r}.engine" for r in range(world_size))]
    missing = [n for n in names if not (engine_dir / n).is_file()]
    if missing:
        return f"engine dir {engine_dir} lacks {', '.join(missing)} (an interrupted copy?)"
    return None


def discard(decision: CacheDecision) -> None:
    """Remove the stale engine directory of a ``rebuild`` decision (nothing else)."""
    if decision.action == REBUILD and decision.engine_dir is not None:
        shutil.rmtree(decision.engine_dir)


@contextlib.contextmanager
def exclusive(lock_path: Path, poll_s: float = 2.0, report_every_s: float = 30.0):
    """Hold an exclusive ``flock`` on ``lock_path`` (created if needed) for the block: replicas
    sharing one cache volume build one at a time; the others wait, then find it built."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+") as handle:
        waited = 0.0
        while not _try_lock(handle):
            if waited % report_every_s < poll_s:
                print(f"[tritonllm] waiting for {lock_path} (another process is building); "
                      f"{waited:.0f} s so far", file=sys.stderr, flush=True)
            time.sleep(poll_s)
            waited += poll_s
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _try_lock(handle) -> bool:
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
