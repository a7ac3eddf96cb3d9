"""Build profiles: one frozen dataclass tree, loaded from YAML and validated on load.

A profile says what to build (model, dtype, quantization, tensor/pipeline parallelism, engine
limits), for which device, and how to serve it. Every default lives here, once: a key left out
of the YAML takes the dataclass default, and the CLI shows these defaults. Unknown keys, wrong
types and out-of-range values raise ``ValueError`` naming the field (``limits.max_seq_len``)
and the limit.

Shape of a profile file (every section and key optional except ``name``)::

    name: llama-3.1-8b-fp8-h100
    model: {dir: /models/Llama-3.1-8B-Instruct, architecture: llama-3.1-8b}
    dtype: bfloat16
    compression: {depth: 0.4, distill: {max_steps: 400, max_minutes: 25}}
    quantization: {mode: fp8, kv_cache: fp8}
    parallel: {tp_size: 1, pp_size: 1}
    limits: {max_batch_size: 64, max_input_len: 4096, max_seq_len: 8192, max_num_tokens: 8192}
    target: {gpu: H100}
    engine: {gemm_plugin: auto, multiple_profiles: true}
    serving: {kv_cache_free_gpu_mem_fraction: 0.9, enable_kv_cache_reuse: true}
    speculative: {mode: lookahead, lookahead_window_size: 4, lookahead_ngram_size: 3}

``compression``: pruning, distillation and 2:4 sparsity of the Hugging Face checkpoint, run
before quantization (tritonllm.build.compression.compress); its result is an ordinary, smaller Llama
checkpoint that every later stage uses in place of ``model.dir``. All off by default.

``serving.openai_port``: where the container entrypoint runs the OpenAI-compatible frontend in
front of the ensemble (tritonllm.deploy.frontend); 0 runs none.

Paths may use ``~`` and ``$VARS``; relative paths are relative to the working directory.
``model.dir: default`` is the cached SmolLM2-135M-Instruct (tritonllm.model_source).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from tritonllm.limits import check_limits
from tritonllm.defaults import OPENAI_PORT
from tritonllm.build.quantization import quant_modes
from tritonllm.build.planning.gpus import get_device
from tritonllm.engine.config import SCHEDULER_POLICIES
from tritonllm.build.speculative import SpeculativeSpec

GEMM_PLUGINS = ("auto", "float16", "bfloat16", "float32", "fp8", "nvfp4", "disable")
AWQ_GROUP_SIZES = (32, 64, 128)


@dataclass(frozen=True)
class ModelSpec:
    """``dir``: Hugging Face Llama checkpoint; ``architecture``: a built-in table entry
    (tritonllm.build.planning.architectures) used when ``dir`` does not exist yet (planning ahead)."""

    dir: str = "default"
    architecture: str | None = None
    tokenizer_dir: str | None = None  # default: ``dir``


@dataclass(frozen=True)
class QuantSpec:
    mode: str = "none"
    kv_cache: str = "none"
    group_size: int = 128  # AWQ modes only
    awq_alpha_step: float = 0.1  # AWQ's scale search grid (ModelOpt's default; 1.0 = coarse)
    smoothquant_alpha: float = 0.5  # int8_sq only
    calibration_samples: int = 32  # text chunks of the bundled calibration corpus
    calibration_max_len: int = 256  # tokens per chunk

    def __post_init__(self) -> None:
        quant_modes.get_mode(self.mode)
        _one_of("quantization.kv_cache", self.kv_cache, quant_modes.KV_MODES)
        _one_of("quantization.group_size", self.group_size, AWQ_GROUP_SIZES)
        if not 0.0 < self.awq_alpha_step <= 1.0:
            raise ValueError(f"quantization.awq_alpha_step: must be in (0, 1], got "
                             f"{self.awq_alpha_step}")
        if not 0.0 <= self.smoothquant_alpha <= 1.0:
            raise ValueError(f"quantization.smoothquant_alpha: must be in [0, 1], got "
                             f"{self.smoothquant_alpha}")
        _at_least("quantization.calibration_samples", self.calibration_samples, 1)
        _at_least("quantization.calibration_max_len", self.calibration_max_len, 16)

    @property
    def quant_mode(self) -> quant_modes.QuantMode:
        return quant_modes.get_mode(self.mode)


SPARSITY_PATTERNS = ("none", "2:4")
SPARSITY_METHODS = ("sparsegpt", "sparse_magnitude")  # ModelOpt's modes (modelopt.torch.sparsity)


@dataclass(frozen=True)
class DistillSpec:
    """Knowledge distillation of the pruned student from the unpruned teacher (ModelOpt's
    ``modelopt.torch.distill`` losses) on the bundled text plus ``generate_tokens`` of the
    teacher's own samples (tritonllm.build.compression.distill_data). It stops at ``max_steps`` or after
    ``max_minutes`` of training, whichever comes first; ``max_steps: 0`` turns it off."""

    max_steps: int = 0
    max_minutes: float = 25.0
    lr: float = 1e-4  # peak; linear warm-up, cosine decay to a tenth at max_steps
    batch_size: int = 4
    seq_len: int = 128  # tokens per training row
    temperature: float = 1.0  # logits KD softening
    intermediate_weight: float = 0.0  # share of the loss from hidden-state matching (0: logits only)
    checkpoint_every: int = 25  # steps between resumable checkpoints
    generate_tokens: int = 0  # teacher-sampled tokens added (at least; whole batches of 16)
    top_k: int = 64  # teacher logits cached once per position (0: teacher forward every step)
    freeze_embeddings: bool = False  # keep the (tied) embedding / lm_head as pruned
    eval_every: int = 0  # steps between held-out perplexity points of distill/curve.json

    def __post_init__(self) -> None:
        _at_least("compression.distill.max_steps", self.max_steps, 0)
        _positive("compression.distill.max_minutes", self.max_minutes)
        _positive("compression.distill.lr", self.lr)
        _at_least("compression.distill.batch_size", self.batch_size, 1)
        _at_least("compression.distill.seq_len", self.seq_len, 8)
        _positive("compression.distill.temperature", self.temperature)
        if not 0.0 <= self.intermediate_weight < 1.0:
            raise ValueError("compression.distill.intermediate_weight: must be in [0, 1), got "
                             f"{self.intermediate_weight}")
        _at_least("compression.distill.checkpoint_every", self.checkpoint_every, 1)
        _at_least("compression.distill.generate_tokens", self.generate_tokens, 0)
        _at_least("compression.distill.top_k", self.top_k, 0)
        _at_least("compression.distill.eval_every", self.eval_every, 0)


@dataclass(frozen=True)
class CompressionSpec:
    """Structured pruning, distillation and 2:4 sparsity (tritonllm.build.compression.compress).

    ``depth``: share of decoder layers removed (the least important on calibration text);
    ``mlp``: share of MLP intermediate channels removed in every layer; ``kv_groups``: whole
    KV-head groups (one KV head and the query heads that read it) removed in every layer;
    ``sparsity: "2:4"``: two of every four weights of each decoder linear layer set to zero
    (TensorRT-LLM then builds with ``--weight_sparsity``)."""

    depth: float = 0.0
    mlp: float = 0.0
    kv_groups: int = 0
    sparsity: str = "none"
    sparsity_method: str = "sparsegpt"
    calibration_samples: int = 8  # windows of the bundled calibration text for importance
    calibration_max_len: int = 256
    distill: DistillSpec = field(default_factory=DistillSpec)

    def __post_init__(self) -> None:
        for name in ("depth", "mlp"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise ValueError(f"compression.{name}: must be in [0, 1), got {value}")
        _at_least("compression.kv_groups", self.kv_groups, 0)
        _one_of("compression.sparsity", self.sparsity, SPARSITY_PATTERNS)
        _one_of("compression.sparsity_method", self.sparsity_method, SPARSITY_METHODS)
        _at_least("compression.calibration_samples", self.calibration_samples, 1)
        _at_least("compression.calibration_max_len", self.calibration_max_len, 16)

    @property
    def prunes(self) -> bool:
        return self.depth > 0 or self.mlp > 0 or self.kv_groups > 0

    @property
    def enabled(self) -> bool:
        return self.prunes or self.sparsity != "none" or self.distill.max_steps > 0


@dataclass(frozen=True)
class ParallelSpec:
    tp_size: int = 1
    pp_size: int = 1

    def __post_init__(self) -> None:
        _at_least("parallel.tp_size", self.tp_size, 1)
        _at_least("parallel.pp_size", self.pp_size, 1)

    @property
    def world_size(self) -> int:
        return self.tp_size * self.pp_size


@dataclass(frozen=True)
class LimitsSpec:
    """Engine limits, TensorRT-LLM's meanings (trtllm-build --max_* flags)."""

    max_batch_size: int = 64
    max_input_len: int = 2048
    max_seq_len: int = 4096
    max_num_tokens: int = 8192

    def __post_init__(self) -> None:
        for name in ("max_batch_size", "max_input_len", "max_seq_len", "max_num_tokens"):
            _at_least(f"limits.{name}", getattr(self, name), 1)
        check_limits(max_input_len=self.max_input_len, max_seq_len=self.max_seq_len,
                     max_batch_size=self.max_batch_size, max_num_tokens=self.max_num_tokens,
                     prefix="limits.")


@dataclass(frozen=True)
class TargetSpec:
    gpu: str = "H100"  # a name from tritonllm.build.planning.gpus; one such device per rank

    def __post_init__(self) -> None:
        get_device(self.gpu)


@dataclass(frozen=True)
class EngineSpec:
    """trtllm-build options that are not limits."""

    gemm_plugin: str = "auto"
    multiple_profiles: bool = True
    workers: int = 0  # parallel rank builds; 0 = one per rank
    tokens_per_block: int = 32  # paged KV block size

    def __post_init__(self) -> None:
        _one_of("engine.gemm_plugin", self.gemm_plugin, GEMM_PLUGINS)
        _at_least("engine.workers", self.workers, 0)
        if self.tokens_per_block < 8 or self.tokens_per_block & (self.tokens_per_block - 1):
            raise ValueError(f"engine.tokens_per_block: must be a power of two >= 8, got "
                             f"{self.tokens_per_block}")


@dataclass(frozen=True)
class ServingSpec:
    """Triton ``tensorrtllm`` backend settings (TensorRT-LLM 1.1.x parameter names)."""

    kv_cache_free_gpu_mem_fraction: float = 0.9
    batch_scheduler_policy: str = "guaranteed_no_evict"
    # Share the KV cache of a common token prefix between requests: the tensorrtllm backend's
    # parameter (its default when absent, TensorRT-LLM 1.1) and the CPU engine's setting. The
    # engine must be built with paged context FMHA (trtllm-build does when this or chunked
    # context is on; the planner rejects quantizations for which TensorRT-LLM turns it off).
    enable_kv_cache_reuse: bool = True
    enable_chunked_context: bool = True
    triton_max_batch_size: int = 0  # 0 = limits.max_batch_size
    decoupled: bool = True
    # Ensemble Python models per engine; 0: the planner's count (tritonllm.build.planning.instances).
    preprocessing_instances: int = 0
    postprocessing_instances: int = 0
    stream_interval: int = 1  # tokens per streamed response (CPU engine step only, docs/serving.md)
    max_queue_delay_microseconds: int = 0
    max_queue_size: int = 32  # waiting requests beyond the batch; more get 503 (0: no limit)
    engine_dir: str = ""  # the engines' path as the server sees it; "" = the build's engine dir
    openai_port: int = OPENAI_PORT  # the container's OpenAI frontend; 0: none
    # Guided decoding on GPU: the backend's parameter ("" = off). With "xgrammar" the repository
    # stage writes the tokenizer-info file beside the engines (tritonllm.build.tokenizer_info).
    guided_decoding_backend: str = "xgrammar"

    def __post_init__(self) -> None:
        if not 0.0 < self.kv_cache_free_gpu_mem_fraction <= 1.0:
            raise ValueError("serving.kv_cache_free_gpu_mem_fraction: must be in (0, 1], got "
                             f"{self.kv_cache_free_gpu_mem_fraction}")
        _one_of("serving.batch_scheduler_policy", self.batch_scheduler_policy,
                SCHEDULER_POLICIES)
        _at_least("serving.triton_max_batch_size", self.triton_max_batch_size, 0)
        _at_least("serving.preprocessing_instances", self.preprocessing_instances, 0)
        _at_least("serving.postprocessing_instances", self.postprocessing_instances, 0)
        _at_least("serving.stream_interval", self.stream_interval, 1)
        _at_least("serving.max_queue_delay_microseconds", self.max_queue_delay_microseconds, 0)
        _at_least("serving.max_queue_size", self.max_queue_size, 0)
        _one_of("serving.guided_decoding_backend", self.guided_decoding_backend,
                ("xgrammar", ""))
        if not 0 <= self.openai_port < 65536:
            raise ValueError(f"serving.openai_port: must be in [0, 65535] (0: no OpenAI "
                             f"frontend), got {self.openai_port}")


@dataclass(frozen=True)
class BuildProfile:
    """A whole build: see the module docstring. ``source`` (the YAML path) is not part of the
    profile's identity and stays out of ``profile_hash``."""

    name: str
    model: ModelSpec = field(default_factory=ModelSpec)
    dtype: str = "bfloat16"
    compression: CompressionSpec = field(default_factory=CompressionSpec)
    quantization: QuantSpec = field(default_factory=QuantSpec)
    parallel: ParallelSpec = field(default_factory=ParallelSpec)
    limits: LimitsSpec = field(default_factory=LimitsSpec)
    target: TargetSpec = field(default_factory=TargetSpec)
    engine: EngineSpec = field(default_factory=EngineSpec)
    serving: ServingSpec = field(default_factory=ServingSpec)
    speculative: SpeculativeSpec = field(default_factory=SpeculativeSpec)
    output_dir: str | None = None  # default: <tritonllm cache>/builds/<name>
    source: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if not self.name or not all(c.isalnum() or c in "-_." for c in self.name):
            raise ValueError(f"name: must be non-empty letters, digits, '-', '_' or '.', "
                             f"got {self.name!r}")
        _one_of("dtype", self.dtype, quant_modes.DTYPES)

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data.pop("source")
        return data

    @property
    def use_paged_context_fmha(self) -> bool:
        """trtllm-build's ``--use_paged_context_fmha``: KV-cache reuse and chunked context both
        need it (TensorRT-LLM 1.1.0's executor disables reuse without it, and refuses chunked
        context). A build option decided by serving options: part of the engine's hash."""
        return self.serving.enable_kv_cache_reuse or self.serving.enable_chunked_context

    @property
    def speculative_build_flags(self) -> dict:
        """trtllm-build's speculative options (empty unless built for lookahead): decided by
        the ``speculative`` section, part of the engine's hash."""
        return self.speculative.build_flags(get_device(self.target.gpu).is_cpu)

    @property
    def triton_max_batch_size(self) -> int:
        return self.serving.triton_max_batch_size or self.limits.max_batch_size

    @property
    def output_path(self) -> Path:
        if self.output_dir:
            return expand_path(self.output_dir)
        from tritonllm.model_source import cache_root

        return cache_root() / "builds" / self.name

    def model_path(self) -> Path | None:
        """The checkpoint directory, or None for ``default`` (resolved by model_source)."""
        return None if self.model.dir == "default" else expand_path(self.model.dir)


def expand_path(text: str) -> Path:
    return Path(os.path.expandvars(os.path.expanduser(text)))


def profile_hash(profile: BuildProfile, sections: tuple[str, ...] | None = None,
                 derived: dict | None = None) -> str:
    """sha256 (16 hex digits) of the profile's canonical JSON, or of some top-level keys (plus
    ``derived`` values that a stage's output depends on)."""
    data = profile.to_dict()
    if sections is not None:
        data = {key: data[key] for key in sections}
    data.update(derived or {})
    text = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# Which top-level profile keys each stage's output depends on (its stamp hashes only these, so
# changing a serving option does not redo the quantization). The engine stage also hashes the
# build flags that other sections decide (``use_paged_context_fmha``, the speculative flags).
STAGE_SECTIONS: dict[str, tuple[str, ...]] = {
    "compress": ("model", "compression"),
    "quantize": ("model", "dtype", "quantization", "parallel"),
    "engine": ("model", "compression", "dtype", "quantization", "parallel", "limits", "target",
               "engine"),
    "repo": ("name", "model", "compression", "dtype", "quantization", "parallel", "limits",
             "target", "engine", "serving", "speculative"),
}


def stage_hash(profile: BuildProfile, stage: str) -> str:
    derived = None
    if stage == "engine":
        derived = {"use_paged_context_fmha": profile.use_paged_context_fmha,
                   **profile.speculative_build_flags}
    return profile_hash(profile, STAGE_SECTIONS[stage], derived)


def engine_hash(profile: BuildProfile) -> str:
    """The hash an engine manifest records (tritonllm.build.manifest)."""
    return stage_hash(profile, "engine")


def load_profile(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> BuildProfile:
    """Read a YAML profile; ``overrides`` are ``section.key=value`` strings (value in YAML)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"profile: {path} does not exist")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"profile: {path} must hold a mapping, got {type(data).__name__}")
    for item in overrides:
        apply_override(data, item)
    return from_dict({**data, "source": str(path)})


def apply_override(data: dict, item: str) -> None:
    """Set ``data[section][key]`` from ``section.key=value`` (the value parsed as YAML)."""
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise ValueError(f"--set: expected section.key=value, got {item!r}")
    *parents, leaf = key.strip().split(".")
    node = data
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ValueError(f"--set: {part!r} in {key!r} is not a section")
    node[leaf] = yaml.safe_load(value)


def from_dict(data: dict) -> BuildProfile:
    return _build(BuildProfile, data, "")


def _build(cls, data, prefix: str):
    if not isinstance(data, dict):
        raise ValueError(f"{prefix.rstrip('.') or 'profile'}: expected a mapping, got "
                         f"{type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ValueError(f"{prefix}{unknown[0]}: unknown key; allowed: {', '.join(names)}")
    kwargs = {k: _convert(hints[k], v, prefix + k) for k, v in data.items()}
    return cls(**kwargs)


def _convert(hint, value, where: str):
    if dataclasses.is_dataclass(hint):
        return _build(hint, value or {}, where + ".")
    allowed = typing.get_args(hint) or (hint,)
    if value is None and type(None) in allowed:
        return None
    for kind in allowed:
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if kind is not type(None) and type(value) is kind:
            return value
    names = " or ".join(getattr(k, "__name__", str(k)) for k in allowed)
    raise ValueError(f"{where}: expected {names}, got {value!r}")


def _one_of(name: str, value, choices) -> None:
    """``choices``: a tuple, or a dict whose keys are the choices."""
    if value not in choices:
        raise ValueError(f"{name}: {value!r} is not one of {tuple(choices)}")


def _at_least(name: str, value: int, floor: int) -> None:
    if value < floor:
        raise ValueError(f"{name}: must be >= {floor}, got {value}")


def _positive(name: str, value: float) -> None:
    if not value > 0:
        raise ValueError(f"{name}: must be > 0, got {value}")
