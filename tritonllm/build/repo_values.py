"""The repository stage: the profile's serving values, rendered by the one model-repository
renderer (``tritonllm.repo.render``) that the CPU deployment uses too.

Mapping (profile -> ``RepoSettings``): ``limits.max_input_len/max_seq_len`` -> preprocessing
limits; ``triton_max_batch_size`` (0 = ``limits.max_batch_size``); ``serving.decoupled``,
``serving.preprocessing_instances`` / ``postprocessing_instances`` (0: the planner's count,
:mod:`tritonllm.build.planning.instances`), ``serving.stream_interval``. GPU targets fill ``GpuEngineSettings`` (the ``tensorrtllm``
backend's parameters): ``engine_dir`` (``serving.engine_dir`` or the build's engine dir),
``batch_scheduler_policy``, ``kv_cache_free_gpu_mem_fraction``, ``enable_kv_cache_reuse``,
``enable_chunked_context``, ``max_queue_delay_microseconds``, ``guided_decoding_backend`` (with
``xgrammar``, ``xgrammar_tokenizer_info_path`` is the tokenizer-info file beside the engines,
which :func:`render` writes), and for ``speculative.mode: lookahead`` ``decoding_mode`` with the
three lookahead sizes. The ``cpu`` target fills the CPU
engine's parameters from the same limits and serving switches (``enable_kv_cache_reuse`` too),
with the planner's KV capacity as its cache size, ``quantization.mode: int8_wo`` / ``int4_wo``
as the CPU engine's int8 / int4 weights, and the ``speculative`` section's ngram or
draft_target settings. :func:`cpu_deployment` is the same mapping as a deployment that
``tritonllm serve --profile`` and the container entrypoint run without a build.
"""

from __future__ import annotations

from pathlib import Path

from tritonllm.build.planning.gpus import get_device
from tritonllm.build.profile import BuildProfile, expand_path
from tritonllm.build.quantization import quant_modes
from tritonllm.build.tokenizer_info import TOKENIZER_INFO_FILE, write_tokenizer_info


def repo_settings(profile: BuildProfile, engine_dir: Path, tokenizer_dir: Path,
                  max_tokens_in_paged_kv_cache: int, model_dir: Path | None = None):
    """``RepoSettings`` for ``profile``. ``max_tokens_in_paged_kv_cache`` (from the plan) sizes
    the CPU engine's cache; ``model_dir`` is the checkpoint the CPU engine loads (cpu target only)."""
    from tritonllm.repo.render import GpuEngineSettings, RepoSettings

    common = dict(tokenizer_dir=str(tokenizer_dir), max_input_len=profile.limits.max_input_len,
                  max_seq_len=profile.limits.max_seq_len,
                  triton_max_batch_size=profile.triton_max_batch_size,
                  decoupled=profile.serving.decoupled, **ensemble_instances(profile))
    if get_device(profile.target.gpu).is_cpu:
        return RepoSettings(target="cpu", cpu_engine_parameters=cpu_engine_parameters(
            profile, max_tokens_in_paged_kv_cache, model_dir or tokenizer_dir), **common)
    serving = profile.serving
    served_engine_dir = serving.engine_dir or str(engine_dir)
    guided = serving.guided_decoding_backend
    gpu = GpuEngineSettings(
        engine_dir=served_engine_dir,
        guided_decoding_backend=guided,
        xgrammar_tokenizer_info_path=str(Path(served_engine_dir) / TOKENIZER_INFO_FILE)
        if guided else "",
        batch_scheduler_policy=serving.batch_scheduler_policy,
        kv_cache_free_gpu_mem_fraction=serving.kv_cache_free_gpu_mem_fraction,
        enable_kv_cache_reuse=serving.enable_kv_cache_reuse,
        enable_chunked_context=serving.enable_chunked_context,
        max_queue_delay_microseconds=serving.max_queue_delay_microseconds,
        max_queue_size=serving.max_queue_size, lookahead=lookahead_sizes(profile))
    return RepoSettings(target="gpu", gpu_engine=gpu, **common)


def lookahead_sizes(profile: BuildProfile) -> tuple[int, int, int] | None:
    """(W, N, G) for an engine built for lookahead decoding, else None."""
    if not profile.speculative_build_flags:
        return None
    spec = profile.speculative
    return (spec.lookahead_window_size, spec.lookahead_ngram_size,
            spec.lookahead_verification_set_size)


def ensemble_instances(profile: BuildProfile) -> dict[str, int]:
    """Pre/postprocessing instance counts and ``stream_interval``: the profile's where it sets
    them, the planner's (``tritonllm.build.planning.instances``) where it leaves 0."""
    serving = profile.serving
    counts = {"preprocessing_instances": serving.preprocessing_instances,
              "postprocessing_instances": serving.postprocessing_instances}
    if 0 in counts.values():
        from tritonllm.build.planning import planner
        from tritonllm.build import source
        from tritonllm.build.planning.instances import plan_instances

        planned = plan_instances(profile, planner.plan(profile, source.model_arch(profile)))
        counts = {"preprocessing_instances": serving.preprocessing_instances
                  or planned.preprocessing,
                  "postprocessing_instances": serving.postprocessing_instances
                  or planned.postprocessing}
    return {**counts, "stream_interval": serving.stream_interval}


def cpu_engine_config(profile: BuildProfile, max_tokens_in_paged_kv_cache: int):
    """The CPU engine's :class:`EngineConfig` for ``profile``: its limits, serving switches,
    weights (``int8_wo`` -> int8, ``int4_wo`` -> int4) and speculative settings."""
    from tritonllm.engine import EngineConfig

    limits, serving = profile.limits, profile.serving
    return EngineConfig(
        max_batch_size=limits.max_batch_size, max_num_tokens=limits.max_num_tokens,
        max_input_len=limits.max_input_len, max_seq_len=limits.max_seq_len,
        max_tokens_in_paged_kv_cache=max_tokens_in_paged_kv_cache,
        tokens_per_block=profile.engine.tokens_per_block,
        batch_scheduler_policy=serving.batch_scheduler_policy,
        enable_chunked_context=serving.enable_chunked_context,
        enable_kv_cache_reuse=serving.enable_kv_cache_reuse,
        max_queue_size=serving.max_queue_size,
        weights=quant_modes.CPU_ENGINE_WEIGHTS.get(profile.quantization.mode, "auto"),
        **cpu_speculative(profile))


def cpu_engine_parameters(profile: BuildProfile, max_tokens_in_paged_kv_cache: int, model_dir: Path
                          ) -> dict[str, str]:
    """The CPU engine step's string parameters (tritonllm.models.engine_step)."""
    config = cpu_engine_config(profile, max_tokens_in_paged_kv_cache)
    return {"model_dir": str(model_dir), **config.to_parameters()}


def cpu_deployment(profile: BuildProfile | None, repo_dir: Path | None = None):
    """The :class:`~tritonllm.serve.cpu.CpuDeployment` that serves a ``cpu``-target profile
    exactly as its built repository would (same engine parameters, KV capacity from the plan,
    ensemble instances and ``stream_interval``); ``None``: what plain ``tritonllm serve`` runs.
    The checkpoint is ``model.dir``, or the build's compressed one when the profile compresses.
    A profile the planner rejects is a ``ValueError`` naming its first problem, as in the build."""
    import dataclasses

    from tritonllm.build import source
    from tritonllm.build.planning import planner
    from tritonllm.serve.cpu import CpuDeployment

    deployment = CpuDeployment()
    if profile is not None:
        if not get_device(profile.target.gpu).is_cpu:
            raise ValueError(f"target.gpu: {profile.target.gpu!r} is not the cpu target; a GPU "
                             "profile is served by `tritonllm deploy entrypoint` on a GPU node")
        plan = planner.accepted_plan(profile, source.model_arch(profile), "the profile")
        model_dir = _cpu_model_dir(profile)
        deployment = CpuDeployment(
            model=str(model_dir) if model_dir else None,
            engine=cpu_engine_config(profile, plan.kv_tokens),
            triton_max_batch_size=profile.triton_max_batch_size,
            decoupled=profile.serving.decoupled, **ensemble_instances(profile))
    if repo_dir is not None:
        deployment = dataclasses.replace(deployment, repo_dir=Path(repo_dir))
    return deployment


def _cpu_model_dir(profile: BuildProfile) -> Path | None:
    """The checkpoint to serve: the build's compressed one when the profile compresses, else
    ``model.dir`` (None for ``default``: the deployment resolves the cached default model)."""
    if profile.compression.enabled:
        compressed = profile.output_path / "compressed" / "model"
        if not (compressed / "config.json").is_file():
            raise ValueError(f"compression: the profile compresses the model and {compressed} "
                             "does not exist yet; run `tritonllm compress PROFILE` first")
        return compressed
    return profile.model_path()


def render(profile: BuildProfile, out_dir: Path, **kwargs) -> Path:
    """Write the filled model repository into ``out_dir`` (see ``repo_settings``), and for a GPU
    target with guided decoding the tokenizer-info file into the local ``engine_dir``."""
    from tritonllm.repo.render import render_repository

    settings = repo_settings(profile, **kwargs)
    if settings.target == "gpu" and settings.gpu_engine.guided_decoding_backend:
        write_tokenizer_info(kwargs["tokenizer_dir"], kwargs["engine_dir"])
    return render_repository(settings, out_dir)


def cpu_speculative(profile: BuildProfile) -> dict:
    """The CPU engine's speculative settings from the profile's ``speculative`` section (the
    planner refuses ``lookahead`` on the cpu target)."""
    spec = profile.speculative
    if spec.mode not in ("ngram", "draft_target"):
        return {}
    model_dir = str(expand_path(spec.speculative_model_dir)) if spec.speculative_model_dir else ""
    return dict(speculative_decoding_mode=spec.mode, max_draft_len=spec.max_draft_len,
                max_matching_ngram_size=spec.max_matching_ngram_size,
                speculative_model_dir=model_dir)
