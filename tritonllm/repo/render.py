"""Render the Triton model repository from the contract and typed settings.

Each ``config.pbtxt`` is built as Triton's own ``ModelConfig`` protobuf message and printed with
``google.protobuf.text_format``: there is no text template, so there is no ``${...}`` hole to
leave unfilled, and a value of the wrong type fails here, at render time, not at server load.

The same renderer serves both targets. Only the engine step differs:

- ``cpu``: ``tensorrt_llm`` is a Python-backend model over :mod:`tritonllm.engine`;
- ``gpu``: ``tensorrt_llm`` targets TensorRT-LLM's ``tensorrtllm`` backend and its engine dir.

Model code (each ``model.py``) is copied from the top-level ``model_repository/`` folder.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field, fields
from pathlib import Path

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as pb

from tritonllm.defaults import ABANDONED_STREAM_TIMEOUT_MS
from tritonllm.limits import check_limits
from tritonllm import contract
from tritonllm.repo import backend_parameters
from tritonllm.contract import ModelContract, Tensor, format_bool
from tritonllm.engine.config import SCHEDULER_POLICIES

TEMPLATES_DIR = Path(__file__).resolve().parents[2] / "model_repository"
PYTHON_MODELS = ("preprocessing", "postprocessing")


@dataclass(frozen=True)
class GpuEngineSettings:
    """The ``tensorrtllm`` backend's parameters (TensorRT-LLM 1.1.x key names)."""

    engine_dir: str
    batch_scheduler_policy: str = "guaranteed_no_evict"
    kv_cache_free_gpu_mem_fraction: float = 0.9
    enable_kv_cache_reuse: bool = False
    enable_chunked_context: bool = False
    max_tokens_in_paged_kv_cache: int | None = None
    max_beam_width: int = 1
    exclude_input_in_output: bool = False
    max_queue_delay_microseconds: int = 0
    max_queue_size: int = 0  # Triton's queue policy; TensorRT-LLM's executor reads it too
    # Guided decoding stays off ("") unless both are set; the backend reads both keys unguarded,
    # so they are always rendered (tritonllm.repo.backend_parameters).
    guided_decoding_backend: str = ""
    xgrammar_tokenizer_info_path: str = ""
    # Lookahead decoding (W, N, G), for an engine built with --speculative_decoding_mode
    # lookahead_decoding: rendered as decoding_mode "lookahead" and the backend's three sizes.
    lookahead: tuple[int, int, int] | None = None
    extra: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.batch_scheduler_policy not in SCHEDULER_POLICIES:
            raise ValueError(f"batch_scheduler_policy: must be one of {SCHEDULER_POLICIES}, "
                             f"got {self.batch_scheduler_policy!r}")
        if not 0.0 < self.kv_cache_free_gpu_mem_fraction <= 1.0:
            raise ValueError("kv_cache_free_gpu_mem_fraction: must be in (0, 1], got "
                             f"{self.kv_cache_free_gpu_mem_fraction}")
        if self.guided_decoding_backend not in ("", "xgrammar"):
            raise ValueError("guided_decoding_backend: must be 'xgrammar' or '' (off), got "
                             f"{self.guided_decoding_backend!r}")
        if bool(self.guided_decoding_backend) != bool(self.xgrammar_tokenizer_info_path):
            raise ValueError("xgrammar_tokenizer_info_path: needed with guided_decoding_backend "
                             "'xgrammar', and only then")

    def parameters(self) -> dict[str, str]:
        params = {
            "gpt_model_type": "inflight_fused_batching",
            "gpt_model_path": self.engine_dir,
            "batch_scheduler_policy": self.batch_scheduler_policy,
            "kv_cache_free_gpu_mem_fraction": str(self.kv_cache_free_gpu_mem_fraction),
            "enable_kv_cache_reuse": format_bool(self.enable_kv_cache_reuse),
            "enable_chunked_context": format_bool(self.enable_chunked_context),
            "max_beam_width": str(self.max_beam_width),
            "exclude_input_in_output": format_bool(self.exclude_input_in_output),
            "guided_decoding_backend": self.guided_decoding_backend,
            "xgrammar_tokenizer_info_path": self.xgrammar_tokenizer_info_path,
        }
        if self.max_tokens_in_paged_kv_cache is not None:
            params["max_tokens_in_paged_kv_cache"] = str(self.max_tokens_in_paged_kv_cache)
        if self.lookahead is not None:
            params["decoding_mode"] = "lookahead"
            params.update(zip(backend_parameters.LOOKAHEAD_SIZES, map(str, self.lookahead)))
        return {**params, **self.extra}


@dataclass(frozen=True, kw_only=True)
class EnsembleOptions:
    """How the ensemble serves, whatever the engine: the settings a deployment chooses
    (``tritonllm serve``'s :class:`~tritonllm.serve.cpu.CpuDeployment` inherits them).

    ``decoupled`` is tensorrtllm_backend's ``decoupled_mode``: true lets responses stream (gRPC
    stream / HTTP generate_stream) and refuses unary ModelInfer and HTTP infer on the engine and
    the ensemble; false serves unary calls and refuses ``stream=true``.
    ``cancellation_check_period_ms``: how often the engine step asks Triton whether a running
    request was cancelled (TensorRT-LLM's backend parameter; the CPU step reads the same one).
    ``abandoned_stream_timeout_ms`` (CPU engine step only; 0: off): a streamed request whose
    responses postprocessing has not received for this long is stopped, its ensemble having
    been cancelled (tritonllm.models.delivery).
    """

    triton_max_batch_size: int = 64
    preprocessing_instances: int = 1
    postprocessing_instances: int = 1
    stream_interval: int = 1
    decoupled: bool = True
    cancellation_check_period_ms: int = 100
    abandoned_stream_timeout_ms: int = ABANDONED_STREAM_TIMEOUT_MS

    def ensemble_options(self) -> dict:
        """These fields as keyword arguments (for :class:`RepoSettings`)."""
        return {f.name: getattr(self, f.name) for f in fields(EnsembleOptions)}


@dataclass(frozen=True, kw_only=True)
class RepoSettings(EnsembleOptions):
    """Everything the model repository needs besides the contract: the ensemble's options and

    ``max_input_len`` / ``max_seq_len``, the engine's limits (preprocessing checks them so that
    errors name the ensemble's fields). ``cpu_engine_parameters`` (target ``cpu``) are handed to
    the CPU engine adapter as string parameters; ``gpu_engine`` (target ``gpu``) fills the
    ``tensorrtllm`` backend's.
    """

    tokenizer_dir: str
    max_input_len: int
    max_seq_len: int
    target: str = "cpu"
    cpu_engine_parameters: dict[str, str] = field(default_factory=dict)
    gpu_engine: GpuEngineSettings | None = None

    def __post_init__(self) -> None:
        if self.target not in ("cpu", "gpu"):
            raise ValueError(f"target: must be 'cpu' or 'gpu', got {self.target!r}")
        if self.target == "gpu" and self.gpu_engine is None:
            raise ValueError("gpu_engine: required when target is 'gpu'")
        if self.triton_max_batch_size < 1:
            raise ValueError(f"triton_max_batch_size: must be >= 1, got "
                             f"{self.triton_max_batch_size}")
        if self.max_input_len < 1:
            raise ValueError(f"max_input_len: must be >= 1, got {self.max_input_len}")
        check_limits(max_input_len=self.max_input_len, max_seq_len=self.max_seq_len)
        for name in ("preprocessing_instances", "postprocessing_instances", "stream_interval",
                     "cancellation_check_period_ms"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: must be >= 1, got {getattr(self, name)}")
        if self.abandoned_stream_timeout_ms < 0:
            raise ValueError("abandoned_stream_timeout_ms: must be >= 0 (0: off), got "
                             f"{self.abandoned_stream_timeout_ms}")
        if self.target == "gpu" and self.decoupled and self.postprocessing_instances > 1:
            raise ValueError("postprocessing_instances: streamed text is exact with several "
                             "instances only when the engine sends preceding_ids, which "
                             "TensorRT-LLM 1.1.0's tensorrtllm backend does not; use 1 on "
                             "target 'gpu' with decoupled (streaming) serving")
        if self.target == "gpu" and self.stream_interval != 1:
            raise ValueError("stream_interval: TensorRT-LLM 1.1.0's tensorrtllm backend has no "
                             "such setting (trtllm-serve's LLM API has); it must be 1 on target "
                             "'gpu'")


def render_configs(settings: RepoSettings) -> dict[str, str]:
    """Model name -> ``config.pbtxt`` text, for every model of the repository."""
    configs = {
        "preprocessing": _python_model(contract.PREPROCESSING, settings,
                                       settings.preprocessing_instances,
                                       {"max_input_len": settings.max_input_len,
                                        "max_seq_len": settings.max_seq_len}),
        "postprocessing": _postprocessing_model(settings),
        "tensorrt_llm": _engine_model(settings),
        "ensemble": _ensemble_model(settings),
    }
    return {name: text_format.MessageToString(cfg) for name, cfg in configs.items()}


def render_repository(settings: RepoSettings, out_dir: str | Path) -> Path:
    """Write a complete model repository (configs + model code) into ``out_dir``."""
    out = Path(out_dir)
    for name, text in render_configs(settings).items():
        model_dir = out / name
        (model_dir / "1").mkdir(parents=True, exist_ok=True)
        (model_dir / "config.pbtxt").write_text(text)
        template = TEMPLATES_DIR / name / "1" / "model.py"
        if name in PYTHON_MODELS or (name == "tensorrt_llm" and settings.target == "cpu"):
            shutil.copyfile(template, model_dir / "1" / "model.py")
        else:
            (model_dir / "1" / "model.py").unlink(missing_ok=True)
    return out


def _python_model(model: ModelContract, settings: RepoSettings, count: int,
                  params: dict | None = None) -> pb.ModelConfig:
    cfg = _base(model, settings.triton_max_batch_size)
    cfg.backend = "python"
    cfg.dynamic_batching.SetInParent()
    cfg.instance_group.add(count=count, kind=pb.ModelInstanceGroup.KIND_CPU)
    _set_parameters(cfg, {"tokenizer_dir": settings.tokenizer_dir, **(params or {})})
    return cfg


def _postprocessing_model(settings: RepoSettings) -> pb.ModelConfig:
    """Stateless per response (``preceding_ids``, see tritonllm.models.postprocess), so any
    number of instances; ``preserve_ordering`` keeps each request's streamed responses in the
    order the engine sent them when several instances work at once."""
    cfg = _python_model(contract.POSTPROCESSING, settings, settings.postprocessing_instances)
    cfg.dynamic_batching.preserve_ordering = True
    return cfg


def _engine_model(settings: RepoSettings) -> pb.ModelConfig:
    cfg = _base(contract.TENSORRT_LLM, settings.triton_max_batch_size,
                _cpu_only_outputs(settings), _cpu_only_inputs(settings))
    cfg.model_transaction_policy.decoupled = settings.decoupled
    cfg.dynamic_batching.SetInParent()
    cfg.instance_group.add(count=1, kind=pb.ModelInstanceGroup.KIND_CPU)
    if settings.target == "cpu":
        cfg.backend = "python"
        params = {"tokenizer_dir": settings.tokenizer_dir,
                  "stream_interval": settings.stream_interval,
                  "abandoned_stream_timeout_ms": settings.abandoned_stream_timeout_ms,
                  **settings.cpu_engine_parameters}
    else:
        cfg.backend = "tensorrtllm"
        gpu = settings.gpu_engine
        cfg.dynamic_batching.max_queue_delay_microseconds = gpu.max_queue_delay_microseconds
        if gpu.max_queue_size:
            # Requests beyond it get UNAVAILABLE / HTTP 503 "Exceeds maximum queue size".
            cfg.dynamic_batching.default_queue_policy.max_queue_size = gpu.max_queue_size
        params = {"tokenizer_dir": settings.tokenizer_dir, **gpu.parameters()}
        problems = backend_parameters.problems(params)
        if problems:
            raise ValueError("tensorrt_llm: the tensorrtllm backend would not load this config: "
                             + "; ".join(problems))
    params = {"cancellation_check_period_ms": settings.cancellation_check_period_ms, **params}
    _set_parameters(cfg, params)
    return cfg


def _ensemble_model(settings: RepoSettings) -> pb.ModelConfig:
    skip = _cpu_only_outputs(settings)
    unwired = {ensemble_name for step in contract.ENSEMBLE.steps
               for name, ensemble_name in step.output_map.items() if name in skip}
    unwired |= set(_cpu_only_inputs(settings))
    cfg = _base(contract.ENSEMBLE, settings.triton_max_batch_size, tuple(unwired),
                tuple(unwired))
    cfg.platform = "ensemble"
    for step in contract.ENSEMBLE.steps:
        pb_step = cfg.ensemble_scheduling.step.add(model_name=step.model_name, model_version=-1)
        pb_step.input_map.update({k: v for k, v in step.input_map.items() if v not in unwired})
        pb_step.output_map.update({k: v for k, v in step.output_map.items()
                                   if v not in unwired})
    return cfg


def _base(model: ModelContract, max_batch_size: int, skip_outputs: tuple[str, ...] = (),
          skip_inputs: tuple[str, ...] = ()) -> pb.ModelConfig:
    cfg = pb.ModelConfig(name=model.name, max_batch_size=max_batch_size)
    for tensor in model.inputs:
        if tensor.name not in skip_inputs:
            cfg.input.append(_input(tensor))
    for tensor in model.outputs:
        if tensor.name not in skip_outputs:
            cfg.output.add(name=tensor.name, data_type=_dtype(tensor), dims=list(tensor.dims))
    return cfg


def _cpu_only_outputs(settings: RepoSettings) -> tuple[str, ...]:
    """Engine outputs only the CPU engine step sends: TensorRT-LLM's ``tensorrtllm`` backend
    knows none of ``preceding_ids``, ``delivery_ticket`` and the top log-probabilities, so on
    GPU they are neither declared nor wired (postprocessing then keeps per-request state, see
    tritonllm.models.postprocess; the ensemble has no ``top_log_probs`` output, which the
    OpenAI frontend reads as "chosen-token log-probabilities only")."""
    if settings.target == "cpu":
        return ()
    return (contract.PRECEDING_IDS, contract.DELIVERY_TICKET, contract.TOP_LOG_PROB_IDS,
            contract.TOP_LOG_PROBS)


def _cpu_only_inputs(settings: RepoSettings) -> tuple[str, ...]:
    """Inputs only the CPU engine step reads: on GPU they are not declared, so Triton refuses a
    request that sends one, naming it, rather than the backend ignoring it."""
    return () if settings.target == "cpu" else ("num_top_log_probs",)


def _input(tensor: Tensor) -> pb.ModelInput:
    message = pb.ModelInput(name=tensor.name, data_type=_dtype(tensor), dims=list(tensor.dims),
                            optional=tensor.optional,
                            allow_ragged_batch=tensor.allow_ragged_batch)
    if tensor.reshape is not None:
        message.reshape.shape.extend(tensor.reshape)
        message.reshape.SetInParent()
    return message


def _dtype(tensor: Tensor) -> int:
    return pb.DataType.Value("TYPE_" + tensor.dtype)


def _set_parameters(cfg: pb.ModelConfig, params: dict[str, str]) -> None:
    for key, value in params.items():
        cfg.parameters[key].string_value = str(value)

