"""Knowledge distillation of a pruned student from its teacher, on CPU, with ModelOpt.

``modelopt.torch.distill`` wraps the student so that one forward runs both models and captures
the outputs named in the criterion: the logits (``lm_head``'s output) always, with ModelOpt's
``LogitsDistillationLoss`` (KL divergence at a temperature); optionally each student decoder
layer's output against the teacher layer it came from (``HiddenStateLoss`` below), the two
mixed by ModelOpt's ``StaticLossBalancer``.

Data: random windows of ``seq_len`` tokens from the bundled calibration text
(``corpus.CALIBRATION``; the held-out text is never trained on). Budget: ``max_steps`` or
``max_minutes``, whichever ends first. Progress: a line every few steps (loss, steps/s) and
``progress.json``. Every ``checkpoint_every`` steps ``checkpoint.pt`` holds the student's
weights, the optimizer, the step and the RNG state; a run that finds a checkpoint whose
``key`` matches continues from it (same data order, as if never stopped).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from tritonllm.build.profile import DistillSpec

CHECKPOINT = "checkpoint.pt"
PROGRESS = "progress.json"
WARMUP_STEPS = 10  # at most; 10 % of max_steps when that is fewer


@dataclass(frozen=True)
class DistillResult:
    steps: int
    resumed_from: int
    seconds: float
    first_loss: float | None
    last_loss: float | None
    stopped_by: str  # "steps" or "time"

    def to_dict(self) -> dict:
        return dict(self.__dict__)


class HiddenStateLoss(torch.nn.modules.loss._Loss):
    """MSE between student and teacher hidden states, scaled by the teacher's mean square so
    every layer pair weighs about the same."""

    def forward(self, out_s, out_t) -> torch.Tensor:
        hs, ht = _hidden(out_s).float(), _hidden(out_t).float().detach()
        return torch.nn.functional.mse_loss(hs, ht) / ht.pow(2).mean().clamp(min=1e-6)


def _hidden(output):
    return output[0] if isinstance(output, tuple) else output


def criterion(spec: DistillSpec, layer_map: dict[int, int]) -> tuple[dict, object]:
    """ModelOpt's (criterion, loss_balancer) for ``spec``; ``layer_map``: student layer ->
    teacher layer it was cut from."""
    import modelopt.torch.distill as mtd

    # reduction "none": KL summed over the vocabulary per token (then averaged over tokens in
    # _step); ModelOpt's "mean" also divides by the vocabulary size (49152 for SmolLM2), which
    # shrinks the gradients towards Adam's epsilon
    losses = {("lm_head", "lm_head"): mtd.LogitsDistillationLoss(temperature=spec.temperature,
                                                                 reduction="none")}
    if spec.intermediate_weight == 0:
        return losses, None
    for s, t in layer_map.items():
        losses[(f"model.layers.{s}", f"model.layers.{t}")] = HiddenStateLoss()
    share = spec.intermediate_weight / len(layer_map)
    weights = [1.0 - spec.intermediate_weight] + [share] * len(layer_map)
    return losses, mtd.StaticLossBalancer(kd_loss_weight=weights)


def training_tokens(tokenizer, text: str, seq_len: int) -> torch.Tensor:
    ids = tokenizer(text, return_tensors="pt").input_ids[0]
    if len(ids) <= seq_len:
        raise ValueError(f"compression.distill.seq_len: {seq_len} must be below the "
                         f"{len(ids)} tokens of the training text")
    return ids


def batch(tokens: torch.Tensor, spec: DistillSpec, generator: torch.Generator) -> torch.Tensor:
    starts = torch.randint(0, len(tokens) - spec.seq_len, (spec.batch_size,),
                           generator=generator)
    return torch.stack([tokens[s:s + spec.seq_len] for s in starts.tolist()])


def distill(student, teacher, tokens: torch.Tensor, spec: DistillSpec, work_dir: Path,
            layer_map: dict[int, int], key: str, log=print) -> tuple[object, DistillResult]:
    """Train ``student`` (see the module docstring); returns the trained plain student and
    what happened."""
    import modelopt.torch.distill as mtd

    work_dir.mkdir(parents=True, exist_ok=True)
    teacher.eval().requires_grad_(False)
    losses, balancer = criterion(spec, layer_map)
    model = mtd.convert(student, mode=[("kd_loss", {"teacher_model": teacher,
                                                    "criterion": losses,
                                                    "loss_balancer": balancer})])
    optimizer = torch.optim.AdamW(student.parameters(), lr=spec.lr, weight_decay=0.0)
    generator = torch.Generator().manual_seed(0)
    start_step = _resume(work_dir, key, model, optimizer, generator, log)
    result = _loop(model, optimizer, tokens, spec, generator, start_step, work_dir, key, log)
    return mtd.export(model), result  # the teacher and the hooks dropped: a plain student


def _loop(model, optimizer, tokens, spec: DistillSpec, generator, step: int, work_dir: Path,
          key: str, log) -> DistillResult:
    started, first, last, resumed_from = time.monotonic(), None, None, step
    deadline = started + 60 * spec.max_minutes
    model.train()
    while step < spec.max_steps and time.monotonic() < deadline:
        loss = _step(model, optimizer, batch(tokens, spec, generator), step, spec)
        step += 1
        first = loss if first is None else first
        last = loss
        if step % spec.checkpoint_every == 0 or step == spec.max_steps:
            _save(work_dir, key, model, optimizer, generator, step)
        _report(work_dir, step, spec, loss, started, resumed_from, log)
    model.eval()
    stopped_by = "steps" if step >= spec.max_steps else "time"
    if stopped_by == "time":
        _save(work_dir, key, model, optimizer, generator, step)
    return DistillResult(step, resumed_from, time.monotonic() - started, first, last, stopped_by)


def _step(model, optimizer, ids: torch.Tensor, step: int, spec: DistillSpec) -> float:
    warmup = max(1, min(WARMUP_STEPS, spec.max_steps // 10))
    for group in optimizer.param_groups:  # linear warm-up, then constant
        group["lr"] = spec.lr * min(1.0, (step + 1) / warmup)
    optimizer.zero_grad(set_to_none=True)
    model(ids, use_cache=False)
    loss = model.compute_kd_loss(loss_reduction_fn=torch.mean)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    return loss.item()


def _report(work_dir: Path, step: int, spec: DistillSpec, loss: float, started: float,
            resumed_from: int, log) -> None:
    elapsed = time.monotonic() - started
    rate = (step - resumed_from) / max(elapsed, 1e-9)
    state = {"step": step, "max_steps": spec.max_steps, "loss": loss,
             "elapsed_s": round(elapsed, 1), "steps_per_s": round(rate, 4)}
    _write_json(work_dir / PROGRESS, state)
    every = max(1, spec.max_steps // 20)
    if step % every == 0 or step == spec.max_steps:
        log(f"distill: step {step}/{spec.max_steps} loss {loss:.4f} ({rate:.2f} steps/s, "
            f"{elapsed:.0f} s)")


def _student_state(model) -> dict:
    return {k: v for k, v in model.state_dict().items() if not k.startswith("_teacher_model.")}


def _save(work_dir: Path, key: str, model, optimizer, generator, step: int) -> None:
    tmp = work_dir / (CHECKPOINT + ".tmp")
    torch.save({"key": key, "step": step, "student": _student_state(model),
                "optimizer": optimizer.state_dict(), "rng": generator.get_state()}, tmp)
    os.replace(tmp, work_dir / CHECKPOINT)


def _resume(work_dir: Path, key: str, model, optimizer, generator, log) -> int:
    path = work_dir / CHECKPOINT
    if not path.is_file():
        return 0
    state = torch.load(path, weights_only=True)
    if state.get("key") != key:
        log(f"distill: {path} is from another configuration; starting afresh")
        return 0
    missing, unexpected = model.load_state_dict(state["student"], strict=False)
    if unexpected or any(not k.startswith("_teacher_model.") for k in missing):
        raise ValueError(f"{path}: does not fit the student (missing {missing[:3]}, "
                         f"unexpected {unexpected[:3]})")
    optimizer.load_state_dict(state["optimizer"])
    generator.set_state(state["rng"])
    log(f"distill: resuming at step {state['step']} from {path}")
    return state["step"]


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data) + "\n")
    os.replace(tmp, path)
