"""Quantize a Hugging Face Llama with ModelOpt and export a TensorRT-LLM checkpoint, on CPU.

``quantize(profile, out_dir)`` loads the checkpoint in fp32, calibrates on the bundled corpus
(``corpus.CALIBRATION``; no dataset download), exports ``config.json`` + ``rank<N>.safetensors``
for the profile's tp/pp with ``export_tensorrt_llm_checkpoint`` and fixes the config where the
export is known to be incomplete:

- ``rotary_base`` / ``rotary_scaling``: without ``tensorrt_llm`` installed ModelOpt fills the
  config by hand and, under transformers 5 (which moved ``rope_theta`` into
  ``rope_parameters``), leaves them out, so TensorRT-LLM would fall back to base 10000 and no
  Llama 3 scaling. Written from the Hugging Face config.
- ``quant_algo`` W8A16 / W4A16 for int8_wo / int4_wo: full-precision weights, quantized by
  TensorRT-LLM at build time (its own ModelOpt recipe; see ``quant_modes``).
- ``smoothquant_val``: the alpha used, for the record (a QuantConfig field).

The export goes to ``<out_dir>.partial`` and is renamed when complete, so a half-written
checkpoint is never taken for a finished one.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from tritonllm.build import corpus

from tritonllm.build.quantization import modelopt_configs
from tritonllm.build.profile import BuildProfile, QuantSpec, expand_path


@dataclass(frozen=True)
class QuantizeResult:
    checkpoint_dir: Path
    quant_algo: str | None
    kv_cache_quant_algo: str | None
    seconds: float


def calibration_windows(tokenizer, q: QuantSpec, text: str = corpus.CALIBRATION) -> list:
    """``q.calibration_samples`` token windows of ``q.calibration_max_len`` from ``text``,
    evenly spaced (overlapping when the corpus is shorter than samples x length)."""
    import torch

    ids = tokenizer(text, return_tensors="pt").input_ids[0]
    length = min(q.calibration_max_len, len(ids))
    last = len(ids) - length
    starts = torch.linspace(0, last, q.calibration_samples).round().long().unique()
    return [ids[s:s + length][None] for s in starts.tolist()]


def load_model(model_dir: Path):
    """The fp32 model, on CPU."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
    return model.eval()


def calibrate(model, tokenizer_dir: Path, q: QuantSpec, config: dict):
    """``mtq.quantize`` with a forward loop over the calibration windows (with a progress bar
    per pass: AWQ runs the loop more than once)."""
    import modelopt.torch.quantization as mtq
    import torch

    from tritonllm.tokenizer import load_tokenizer

    windows = calibration_windows(load_tokenizer(tokenizer_dir), q)

    def forward_loop(m) -> None:
        with torch.no_grad():
            for window in tqdm(windows, desc="calibrating", unit="sample", leave=False):
                m(window)

    return mtq.quantize(model, config, forward_loop)


def export(model, profile: BuildProfile, out_dir: Path) -> None:
    """``export_tensorrt_llm_checkpoint`` with a progress bar over the rank files it writes."""
    import torch
    from modelopt.torch.export import export_tensorrt_llm_checkpoint

    world = profile.parallel.world_size
    errors: list[BaseException] = []

    def run() -> None:
        try:
            with torch.no_grad():
                export_tensorrt_llm_checkpoint(
                    model, "llama", getattr(torch, profile.dtype), out_dir,
                    inference_tensor_parallel=profile.parallel.tp_size,
                    inference_pipeline_parallel=profile.parallel.pp_size)
        except BaseException as exc:  # re-raised on the calling thread below
            errors.append(exc)

    worker = threading.Thread(target=run, name="modelopt-export")
    worker.start()
    with tqdm(total=world, desc="exporting", unit="rank", leave=False) as bar:
        while worker.is_alive():
            worker.join(0.2)
            bar.update(len(list(out_dir.glob("rank*.safetensors"))) - bar.n)
    if errors:
        raise errors[0]


def fix_config(out_dir: Path, profile: BuildProfile, hf_config: dict) -> dict:
    """Apply the fixes listed in the module docstring; returns the final config."""
    from tritonllm.build.planning.architectures import from_hf_config

    path = out_dir / "config.json"
    config = json.loads(path.read_text())
    arch = from_hf_config(hf_config)
    config["rotary_base"] = arch.rope_theta
    config["rotary_scaling"] = dict(arch.rope_scaling) if arch.rope_scaling else None
    q = profile.quantization
    quant = config.setdefault("quantization", {})
    if q.quant_mode.quantized_by == "tensorrt_llm":
        quant["quant_algo"] = q.quant_mode.quant_algo
    if q.mode == "int8_sq":
        quant["smoothquant_val"] = q.smoothquant_alpha
    path.write_text(json.dumps(config, indent=4) + "\n")
    if quant.get("quant_algo") != "MIXED_PRECISION":
        (out_dir / "quant_cfg.json").unlink(missing_ok=True)  # only read for mixed precision
    return config


def quantize(profile: BuildProfile, out_dir: str | Path, model_dir: Path | None = None
             ) -> QuantizeResult:
    """Load, calibrate (when the mode needs it), export and fix; see the module docstring."""
    from tritonllm.build.source import require_checkpoint_dir

    start = time.monotonic()
    model_dir = model_dir or require_checkpoint_dir(profile)
    out_dir = Path(out_dir)
    staging = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    with tqdm(total=1, desc=f"loading {model_dir.name}", leave=False) as bar:
        model = load_model(model_dir)
        bar.update()
    config = modelopt_configs.for_export(profile.quantization)
    if config is not None:
        tokenizer_dir = profile.model.tokenizer_dir
        tokenizer_dir = expand_path(tokenizer_dir) if tokenizer_dir else model_dir
        model = calibrate(model, tokenizer_dir, profile.quantization, config)
    export(model, profile, staging)
    final = fix_config(staging, profile, json.loads((model_dir / "config.json").read_text()))
    shutil.rmtree(out_dir, ignore_errors=True)
    staging.rename(out_dir)
    quant = final.get("quantization") or {}
    return QuantizeResult(out_dir, quant.get("quant_algo"), quant.get("kv_cache_quant_algo"),
                          time.monotonic() - start)
