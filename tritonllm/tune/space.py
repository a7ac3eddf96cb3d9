"""The search space: profile keys, the values to try for each, and what changing one costs.

A candidate is a dict of ``section.key -> value`` overrides of the base profile (``{}`` is the
base itself). Whether a key needs a new engine is not a table kept here: a change needs one
when it changes the build's ``quantize`` or ``engine`` stage hash
(:data:`tritonllm.build.profile.STAGE_SECTIONS`); otherwise only the model repository is
re-rendered and the server restarted. By default the space holds runtime keys only;
``include_rebuild`` adds the keys that need a new engine (on the CPU twin they cost a restart
too, as its engine converts weights at load; on a GPU, a ``trtllm-build`` each).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from tritonllm.build.profile import BuildProfile, apply_override, from_dict, stage_hash

REBUILD_STAGES = ("quantize", "engine")

# Values tried per key, in the order tried. Runtime keys first; then the keys whose change
# needs a new engine. Ordered by how much each tends to move goodput on the CPU twin.
RUNTIME_VALUES: dict[str, tuple] = {
    "serving.stream_interval": (2, 4),
    "serving.batch_scheduler_policy": ("guaranteed_no_evict", "max_utilization"),
    "serving.max_queue_size": (8, 32, 128),
    "serving.postprocessing_instances": (1, 2),
}
REBUILD_VALUES: dict[str, tuple] = {
    "quantization.mode": ("none", "int8_wo", "int4_wo"),
    "limits.max_num_tokens": (128, 256, 512, 1024),
    "limits.max_batch_size": (4, 8, 16, 32),
}
# On a GPU: the tensorrtllm backend's parameters (TensorRT-LLM 1.1.0 has no stream_interval
# there), and engines of GPU sizes; a quantization the GPU cannot run is refused by the planner
# and reported as such.
GPU_RUNTIME_VALUES: dict[str, tuple] = {
    "serving.batch_scheduler_policy": ("guaranteed_no_evict", "max_utilization"),
    "serving.enable_chunked_context": (True, False),
    "serving.kv_cache_free_gpu_mem_fraction": (0.8, 0.95),
    "serving.max_queue_size": (64, 256, 1024),
    "serving.postprocessing_instances": (1, 2, 4),
}
GPU_REBUILD_VALUES: dict[str, tuple] = {
    "quantization.mode": ("none", "fp8", "int8_wo", "int4_awq"),
    "limits.max_num_tokens": (2048, 4096, 8192, 16384),
    "limits.max_batch_size": (64, 128, 256),
}


@dataclass(frozen=True)
class Dimension:
    """One profile key and the values to try for it."""

    key: str
    values: tuple

    def __post_init__(self) -> None:
        if "." not in self.key:
            raise ValueError(f"space: {self.key!r} is not a section.key profile key")
        if not self.values:
            raise ValueError(f"space.{self.key}: needs at least one value")


def default_space(include_rebuild: bool = False, gpu: bool = False) -> list[Dimension]:
    """The shipped space for the CPU twin or a GPU: rebuild keys first when included (they
    move goodput most)."""
    runtime, rebuild = ((GPU_RUNTIME_VALUES, GPU_REBUILD_VALUES) if gpu
                        else (RUNTIME_VALUES, REBUILD_VALUES))
    table = {**rebuild, **runtime} if include_rebuild else runtime
    return [Dimension(key, values) for key, values in table.items()]


def parse_space(spec: str) -> list[Dimension]:
    """``"limits.max_batch_size=8|16,serving.stream_interval=1|2"`` -> dimensions (values in
    YAML, so ``true``, ``8`` and ``int8_wo`` take their natural types)."""
    import yaml

    dims = []
    for item in filter(None, (part.strip() for part in spec.split(","))):
        key, sep, values = item.partition("=")
        if not sep:
            raise ValueError(f"space: {item!r} is not section.key=v1|v2|...")
        dims.append(Dimension(key.strip(), tuple(yaml.safe_load(v) for v in values.split("|"))))
    if not dims:
        raise ValueError(f"space: {spec!r} names no key")
    return dims


def candidate_key(overrides: dict) -> str:
    """A candidate's identity in the journal and the reports: its sorted overrides as JSON."""
    return json.dumps(overrides, sort_keys=True, separators=(",", ":"))


def label(overrides: dict) -> str:
    """``"default"`` or ``"max_batch_size=16 stream_interval=2"``: short enough for a plot."""
    if not overrides:
        return "default"
    return " ".join(f"{key.rsplit('.', 1)[1]}={value}" for key, value in sorted(overrides.items()))


def candidate_profile(base: BuildProfile, overrides: dict) -> BuildProfile:
    """``base`` with ``overrides`` applied; ValueError naming the key when a value is invalid."""
    data = base.to_dict()
    for key, value in overrides.items():
        apply_override(data, f"{key}={json.dumps(value)}")
    return from_dict({**data, "source": base.source})


def current_value(profile: BuildProfile, key: str):
    """The value of ``section.key`` in ``profile``."""
    node = profile.to_dict()
    try:
        for part in key.split("."):
            node = node[part]
    except (KeyError, TypeError):
        raise ValueError(f"space: {key!r} is not a key of the profile") from None
    return node


def rebuild_stages(base: BuildProfile, profile: BuildProfile) -> tuple[str, ...]:
    """The build stages ``profile`` re-runs that ``base`` had done: empty for a runtime change."""
    return tuple(stage for stage in REBUILD_STAGES
                 if stage_hash(base, stage) != stage_hash(profile, stage))
