"""The compress stage: prune -> distill -> 2:4 sparsify a Hugging Face Llama, before quantization.

Order and why: pruning first (importance on calibration text, tritonllm.build.compression.prune); then
distillation from the unpruned teacher (tritonllm.build.compression.distill), which recovers what pruning
lost; 2:4 sparsity last (tritonllm.build.compression.sparsity), one-shot, so the zeros it chooses are not
moved again by training. Any step that the profile leaves off is skipped.

Outputs, under the stage's directory::

    model/            the compressed checkpoint: config.json, model.safetensors, tokenizer
                      (an ordinary LlamaForCausalLM; later stages read it instead of model.dir)
    pruned/           the pruned student before distillation (kept for the accuracy report)
    distill/          rows.pt (training rows + teacher top-k), checkpoint.pt (resumable),
                      progress.json, curve.json (held-out perplexity vs step, eval_every)
    compress.json     what was done: the kept layers, sizes, parameter counts, distillation

:func:`compressed_arch` gives the same numbers from the profile alone, so the planner sizes a
compressed build before the stage has run.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path

from tritonllm.build.compression import prune
from tritonllm.build.planning.architectures import ModelArch
from tritonllm.build.profile import CompressionSpec


@dataclass(frozen=True)
class CompressResult:
    model_dir: Path
    params_before: int
    params_after: int
    seconds: float
    summary: dict

    @property
    def detail(self) -> str:
        return (f"{self.model_dir} ({self.params_before / 1e6:.1f} M -> "
                f"{self.params_after / 1e6:.1f} M parameters, {self.seconds:.0f} s)")


def compressed_arch(arch: ModelArch, spec: CompressionSpec) -> ModelArch:
    """``arch`` after ``spec``'s pruning (sparsity and distillation keep the shape)."""
    if not spec.prunes:
        return arch
    kv = prune.kept_kv_groups(arch.num_kv_heads, spec.kv_groups, arch.num_heads,
                              arch.hidden_size)
    return dataclasses.replace(
        arch, num_layers=prune.kept_layers(arch.num_layers, spec.depth),
        intermediate_size=prune.kept_mlp(arch.intermediate_size, spec.mlp), num_kv_heads=kv,
        num_heads=kv * (arch.num_heads // arch.num_kv_heads))


def parameter_count(model) -> int:
    """Distinct parameters (a tied embedding counted once)."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


def compress(spec: CompressionSpec, source_dir: Path, out_dir: Path, key: str = "",
             log=print) -> CompressResult:
    """Run the stage (see the module docstring) from ``source_dir`` into ``out_dir``."""
    from tritonllm.build.quantization.quantize import calibration_windows, load_model
    from tritonllm.tokenizer import load_tokenizer

    started = time.monotonic()
    tokenizer = load_tokenizer(source_dir)
    teacher = load_model(source_dir)
    windows = calibration_windows(tokenizer, spec)
    summary: dict = {"source": str(source_dir), "spec": dataclasses.asdict(spec)}
    student, layer_map = _prune(teacher, windows, spec, out_dir, tokenizer, summary, log)
    if spec.distill.max_steps > 0:
        student = _distill(student, teacher, tokenizer, spec, out_dir, layer_map, key, summary,
                           log)
    if spec.sparsity != "none":
        from tritonllm.build.compression import sparsity

        log(f"sparsity: {spec.sparsity} with ModelOpt {spec.sparsity_method}")
        student = sparsity.sparsify(student, spec.sparsity_method, windows)
        summary["sparsity"] = {"pattern": spec.sparsity, "method": spec.sparsity_method}
    summary.update(params_before=parameter_count(teacher), params_after=parameter_count(student))
    save_checkpoint(student, tokenizer, out_dir / "model")
    (out_dir / "compress.json").write_text(json.dumps(summary, indent=2) + "\n")
    return CompressResult(out_dir / "model", summary["params_before"], summary["params_after"],
                          time.monotonic() - started, summary)


def _prune(teacher, windows, spec: CompressionSpec, out_dir: Path, tokenizer, summary: dict,
           log):
    """(student, student layer -> teacher layer). Without pruning the student is a copy."""
    import copy

    if not spec.prunes:
        student = copy.deepcopy(teacher)
        return student, {i: i for i in range(teacher.config.num_hidden_layers)}
    plan = prune.make_plan(teacher, windows, spec.depth, spec.mlp, spec.kv_groups, log)
    student = prune.apply_plan(teacher, plan)
    summary["prune"] = plan.to_dict()
    save_checkpoint(student, tokenizer, out_dir / "pruned")
    log(f"pruned: {parameter_count(teacher) / 1e6:.1f} M -> "
        f"{parameter_count(student) / 1e6:.1f} M parameters")
    return student, dict(enumerate(plan.layers))


def _distill(student, teacher, tokenizer, spec: CompressionSpec, out_dir: Path,
             layer_map: dict, key: str, summary: dict, log):
    from tritonllm.build.compression.distill import distill

    rows = training_rows(teacher, tokenizer, spec, out_dir / "distill", key, log)
    evaluate = heldout_perplexity(tokenizer) if spec.distill.eval_every else None
    student, result = distill(student, teacher, rows, spec.distill, out_dir / "distill",
                              layer_map, key, log, evaluate)
    summary["distill"] = {**result.to_dict(), "training_rows": len(rows),
                          "training_tokens": rows.target_tokens}
    return student


def training_rows(teacher, tokenizer, spec: CompressionSpec, work_dir: Path, key: str, log):
    """The bundled text packed into rows plus ``generate_tokens`` of teacher samples, with the
    teacher's top-k logits when the loop uses them (``distill_data``); kept in
    ``rows.pt`` and reused by a rerun with the same ``key`` (sampling is the slow part)."""
    import torch

    from tritonllm.build import corpus

    from tritonllm.build.compression import distill_data
    from tritonllm.build.compression.distill import uses_cache

    d = spec.distill
    path = work_dir / "rows.pt"
    if path.is_file() and (saved := torch.load(path, weights_only=True))["key"] == key:
        log(f"distill: reusing the training rows of {path}")
        return distill_data.Rows(*saved["rows"])
    top_k = d.top_k if uses_cache(d) else 0
    parts = [distill_data.scored(teacher, distill_data.packed(tokenizer, corpus.CALIBRATION,
                                                              d.seq_len), top_k)]
    if d.generate_tokens:
        starts = distill_data.prompts(tokenizer, corpus.CALIBRATION)
        parts.append(distill_data.generated(teacher, tokenizer, starts, d.generate_tokens,
                                            d.seq_len, top_k, log=log))
    rows = distill_data.Rows.cat(parts)
    work_dir.mkdir(parents=True, exist_ok=True)
    torch.save({"key": key, "rows": [rows.ids, rows.mask, rows.index, rows.logit]}, path)
    return rows


def heldout_perplexity(tokenizer):
    """``evaluate`` for the distillation curve: perplexity on ``corpus.HELDOUT``, computed as
    the accuracy report does (same windows)."""
    import math

    from tritonllm.build.quantization import accuracy

    from tritonllm.build import corpus

    ids = tokenizer(corpus.HELDOUT, return_tensors="pt").input_ids[0]
    windows = list(ids.split(accuracy.WINDOW))
    return lambda model: {"heldout_perplexity": math.exp(accuracy.evaluate(model, windows, [],
                                                                           0).nll)}


def save_checkpoint(model, tokenizer, path: Path) -> None:
    """An fp32 safetensors checkpoint + tokenizer both transformers lines read."""
    from tritonllm.hf_compat import write_portable_checkpoint

    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    write_portable_checkpoint(path)
