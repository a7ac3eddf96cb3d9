"""The engine stage: ``trtllm-build`` (TensorRT-LLM 1.1.0) command lines from a profile, run when
TensorRT-LLM and a GPU are present, printed otherwise.

Flags are TensorRT-LLM's (``tensorrt_llm/commands/build.py`` and the plugin options it adds from
``tensorrt_llm/plugin/plugin.py``, read at commits 65f1d15 and 008b2b8 of the 1.x line; the
v1.1.0 tag's own copy, commit 48b7b5d, was not reachable). Every option that matters is passed
explicitly rather than left to a default that moved between releases (``tokens_per_block``,
``use_paged_context_fmha``):

- limits: ``--max_batch_size --max_input_len --max_seq_len --max_num_tokens``, beam width 1;
- ``--kv_cache_type paged`` with ``--tokens_per_block``;
- ``--use_paged_context_fmha enable`` when KV-cache reuse or chunked context is on (both need it:
  without it the executor silently disables block reuse and refuses chunked context).
  trtllm-build itself turns the flag off, with only a warning, for an INT8 KV cache and for an
  FP8 KV cache without FP8 attention (quant_algo other than FP8, W4A8_AWQ, NVFP4; or a GPU
  before sm89): :func:`paged_context_fmha_blocker` names that case and the planner rejects it;
- ``--use_fp8_context_fmha enable`` for FP8 models with an FP8 KV cache on FP8-capable GPUs;
- ``--gemm_plugin`` (``auto``: the model dtype), ``--multiple_profiles``, ``--workers`` (ranks
  built in parallel; trtllm-build caps it at the visible GPU count);
- ``--weight_sparsity`` (a switch, off by default) when the profile's ``compression.sparsity`` is
  ``2:4``: TensorRT picks sparse tensor-core kernels for the 2:4 weights
  (tritonllm.build.compression.sparsity). Read in ``tensorrt_llm/commands/build.py`` at commit 008b2b8 (a
  store-true flag defaulting to ``BuildConfig.weight_sparsity``, False).

- ``--speculative_decoding_mode lookahead_decoding --max_draft_len D`` for a profile with
  ``speculative.mode: lookahead`` (``build.py`` lines 289-302 at commit 008b2b8: choices
  ``draft_tokens_external``, ``lookahead_decoding``, ``medusa``, ``explicit_draft_tokens``,
  ``eagle``), ``D`` from the lookahead sizes (``SpeculativeSpec.lookahead_max_draft_len``).
  trtllm-build then adds ``D`` to ``max_seq_len`` and raises ``max_num_tokens`` to at least
  ``max_batch_size * (D + 1)`` (``builder.py``, ``build()``); the planner sizes activations
  for that.

One invocation builds every rank (``rank<N>.engine`` for N < tp x pp) into ``--output_dir``.
"""

from __future__ import annotations

import datetime
import importlib.util
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from tritonllm.build.quantization import quant_modes
from tritonllm.build.planning.gpus import get_device
from tritonllm.build.manifest import EngineManifest, write_manifest
from tritonllm.build.profile import BuildProfile, engine_hash
from tritonllm.gpu_stack import TENSORRT_LLM_VERSION, TRITON_GPU_IMAGE

EXIT_ENGINE_DEFERRED = 3  # commands printed, not run: no TensorRT-LLM or no GPU here


@dataclass(frozen=True)
class EngineResult:
    """``built``: the engines exist now; otherwise ``reason`` says why the commands were not
    run (``None`` reason and not built: nothing to build, the cpu target)."""

    built: bool
    commands: tuple[tuple[str, ...], ...] = ()
    reason: str | None = None
    engine_dir: Path | None = None
    manifest: EngineManifest | None = field(default=None, compare=False)

    @property
    def deferred(self) -> bool:
        return not self.built and bool(self.commands)

    def shell(self) -> str:
        return "\n".join(shlex.join(cmd) for cmd in self.commands)


def _switch(on: bool) -> str:
    return "enable" if on else "disable"


def trtllm_build_command(profile: BuildProfile, checkpoint_dir: Path, engine_dir: Path
                         ) -> list[str]:
    """The exact ``trtllm-build`` argv for ``profile`` (see the module docstring)."""
    limits, engine = profile.limits, profile.engine
    q = profile.quantization
    fp8_fmha = (q.mode == "fp8" and q.kv_cache == "fp8"
                and get_device(profile.target.gpu).supports_fp8)
    paged_context = profile.use_paged_context_fmha
    sparse = ["--weight_sparsity"] if profile.compression.sparsity == "2:4" else []
    speculative = [arg for name, value in profile.speculative_build_flags.items()
                   for arg in (f"--{name}", str(value))]
    return [
        "trtllm-build",
        "--checkpoint_dir", str(checkpoint_dir),
        "--output_dir", str(engine_dir),
        "--max_batch_size", str(limits.max_batch_size),
        "--max_input_len", str(limits.max_input_len),
        "--max_seq_len", str(limits.max_seq_len),
        "--max_num_tokens", str(limits.max_num_tokens),
        "--max_beam_width", "1",
        "--gemm_plugin", engine.gemm_plugin,
        "--gpt_attention_plugin", "auto",
        "--kv_cache_type", "paged",
        "--tokens_per_block", str(engine.tokens_per_block),
        "--remove_input_padding", "enable",
        "--context_fmha", "enable",
        "--use_paged_context_fmha", _switch(paged_context),
        "--use_fp8_context_fmha", _switch(fp8_fmha),
        "--multiple_profiles", _switch(engine.multiple_profiles),
        "--workers", str(engine.workers or profile.parallel.world_size),
        *sparse,
        *speculative,
    ]


# quant_algo values with FP8 attention, for which trtllm-build keeps paged context FMHA on an
# FP8 KV cache (TensorRT-LLM 1.1.x tensorrt_llm/builder.py, build()).
FP8_ATTENTION_ALGOS = ("FP8", "W4A8_AWQ", "NVFP4")


def paged_context_fmha_blocker(profile: BuildProfile) -> str | None:
    """Why trtllm-build would turn paged context FMHA off for this profile's quantization and
    GPU (None when it keeps it)."""
    q = profile.quantization
    if q.kv_cache == "int8":
        return "an INT8 KV cache"
    if q.kv_cache == "fp8" and q.quant_mode.quant_algo not in FP8_ATTENTION_ALGOS:
        return (f"an FP8 KV cache with quant_algo {q.quant_mode.quant_algo} (FP8 attention "
                f"needs {', '.join(FP8_ATTENTION_ALGOS)})")
    device = get_device(profile.target.gpu)
    if q.kv_cache == "fp8" and not device.is_cpu and not device.supports_fp8:
        return f"an FP8 KV cache on {device.name} (sm{device.sm}: no FP8 attention before sm89)"
    return None


def environment_problem() -> str | None:
    """Why engines cannot be built here (None when they can)."""
    if importlib.util.find_spec("tensorrt_llm") is None:
        return (f"TensorRT-LLM is not installed here; run the commands on a GPU node with "
                f"TensorRT-LLM {TENSORRT_LLM_VERSION} (e.g. the {TRITON_GPU_IMAGE} container)")
    import torch

    if not torch.cuda.is_available():
        return "no CUDA GPU is visible; trtllm-build needs the GPU type the engine will serve on"
    return None


def build_engine(profile: BuildProfile, checkpoint_dir: Path, engine_dir: Path,
                 run=subprocess.run) -> EngineResult:
    """Run trtllm-build (or explain why not) and write the manifest beside the engines."""
    if get_device(profile.target.gpu).is_cpu:
        return EngineResult(built=False, reason=None)
    command = trtllm_build_command(profile, checkpoint_dir, engine_dir)
    problem = environment_problem()
    if problem:
        return EngineResult(built=False, commands=(tuple(command),), reason=problem,
                            engine_dir=engine_dir)
    engine_dir.mkdir(parents=True, exist_ok=True)
    print(f"[tritonllm] {shlex.join(command)}", file=sys.stderr, flush=True)
    run(command, check=True)
    manifest = make_manifest(profile, *_runtime())
    write_manifest(engine_dir, manifest)
    return EngineResult(built=True, commands=(tuple(command),), engine_dir=engine_dir,
                        manifest=manifest)


def _runtime() -> tuple[str, str, str]:
    """(TensorRT-LLM version, GPU name, compute capability) of this machine."""
    import tensorrt_llm
    import torch

    major, minor = torch.cuda.get_device_capability(0)
    return tensorrt_llm.__version__, torch.cuda.get_device_name(0), f"{major}.{minor}"


def make_manifest(profile: BuildProfile, trtllm_version: str, gpu_name: str,
                  compute_capability: str) -> EngineManifest:
    q, limits = profile.quantization, profile.limits
    return EngineManifest(
        profile_name=profile.name, profile_hash=engine_hash(profile),
        tensorrt_llm_version=trtllm_version, gpu_name=gpu_name,
        compute_capability=compute_capability, tp_size=profile.parallel.tp_size,
        pp_size=profile.parallel.pp_size, dtype=profile.dtype,
        quant_algo=q.quant_mode.quant_algo, kv_cache_quant_algo=quant_modes.KV_MODES[q.kv_cache][0],
        max_batch_size=limits.max_batch_size, max_input_len=limits.max_input_len,
        max_seq_len=limits.max_seq_len, max_num_tokens=limits.max_num_tokens,
        created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))
