"""Knowledge distillation of a pruned student from its teacher, on CPU, with ModelOpt.

Targets: the teacher's logits, matched with ModelOpt's ``LogitsDistillationLoss`` (KL
divergence at a temperature). Two ways to get them:

- cached (``top_k`` > 0, logits only): the teacher's top-k logits at every training position,
  computed once (``distill_data``); each step runs only the student, and the loss sees the
  teacher's top-k with the rest of the vocabulary at zero probability. Measured on SmolLM2 with
  one thread: the teacher forward is about a quarter of a step with the teacher live.
- live (``top_k: 0``, or ``intermediate_weight`` > 0): ``modelopt.torch.distill`` wraps the
  student so that one forward runs both models and captures the logits and, with
  ``intermediate_weight``, each student decoder layer's output against the teacher layer it
  came from (``HiddenStateLoss`` below), mixed by ModelOpt's ``StaticLossBalancer``.

Data: rows of ``seq_len`` tokens (``distill_data.Rows``: the packed calibration text and the
teacher's own samples; the held-out text is never trained on), ``batch_size`` rows a step, every
row once per epoch in an order fixed by the step number. Schedule: linear warm-up, then cosine
decay to ``MIN_LR_SHARE`` of ``lr`` at ``max_steps``. Budget: ``max_steps`` or ``max_minutes``,
whichever ends first. ``freeze_embeddings`` keeps the (tied) embedding and lm_head as pruned.
Progress: a line every few steps (loss, steps/s) and ``progress.json``; an optional
``evaluate(student)`` every ``eval_every`` steps appends to ``curve.json`` (measurement only:
nothing is chosen by it). Every ``checkpoint_every`` steps ``checkpoint.pt`` holds the student's
weights, the optimizer and the step; a run that finds a checkpoint whose ``key`` matches
continues from it (same data order, as if never stopped).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from tritonllm.build.compression.distill_data import Rows
from tritonllm.build.profile import DistillSpec

CHECKPOINT = "checkpoint.pt"
PROGRESS = "progress.json"
CURVE = "curve.json"
WARMUP_STEPS = 10  # at most; 10 % of max_steps when that is fewer
MIN_LR_SHARE = 0.1  # the cosine decay ends at this share of the peak learning rate


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
    # _masked_mean); ModelOpt's "mean" also divides by the vocabulary size (49152 for
    # SmolLM2), which shrinks the gradients towards Adam's epsilon
    losses = {("lm_head", "lm_head"): mtd.LogitsDistillationLoss(temperature=spec.temperature,
                                                                 reduction="none")}
    if spec.intermediate_weight == 0:
        return losses, None
    for s, t in layer_map.items():
        losses[(f"model.layers.{s}", f"model.layers.{t}")] = HiddenStateLoss()
    share = spec.intermediate_weight / len(layer_map)
    weights = [1.0 - spec.intermediate_weight] + [share] * len(layer_map)
    return losses, mtd.StaticLossBalancer(kd_loss_weight=weights)


def batch_rows(rows: int, batch_size: int, step: int) -> torch.Tensor:
    """Row numbers for ``step``: each epoch a fresh permutation (seeded by the epoch), so the
    order is a function of the step alone and a resumed run sees what it would have seen."""
    first = step * batch_size
    out = []
    for position in range(first, first + batch_size):
        epoch, offset = divmod(position, rows)
        order = torch.randperm(rows, generator=torch.Generator().manual_seed(epoch))
        out.append(order[offset])
    return torch.stack(out)


def learning_rate(spec: DistillSpec, step: int) -> float:
    warmup = max(1, min(WARMUP_STEPS, spec.max_steps // 10))
    if step < warmup:
        return spec.lr * (step + 1) / warmup
    done = (step - warmup) / max(1, spec.max_steps - warmup)
    return spec.lr * (MIN_LR_SHARE + (1 - MIN_LR_SHARE) * 0.5 * (1 + math.cos(math.pi * done)))


def uses_cache(spec: DistillSpec) -> bool:
    return spec.top_k > 0 and spec.intermediate_weight == 0


def distill(student, teacher, rows: Rows, spec: DistillSpec, work_dir: Path,
            layer_map: dict[int, int], key: str, log=print, evaluate=None
            ) -> tuple[object, DistillResult]:
    """Train ``student`` on ``rows`` (see the module docstring); returns the trained plain
    student and what happened. ``evaluate(student) -> dict`` feeds ``curve.json``."""
    work_dir.mkdir(parents=True, exist_ok=True)
    if spec.freeze_embeddings:
        student.get_input_embeddings().requires_grad_(False)
        student.get_output_embeddings().requires_grad_(False)
    if uses_cache(spec):
        model, loss_fn = student, _cached_loss(spec)
    else:
        model, loss_fn = _live(student, teacher, spec, layer_map), _live_loss
    optimizer = torch.optim.AdamW([p for p in student.parameters() if p.requires_grad],
                                  lr=spec.lr, weight_decay=0.0)
    start_step = _resume(work_dir, key, model, optimizer, log)
    loop = _Loop(model, optimizer, loss_fn, rows, spec, work_dir, key, log, evaluate)
    result = loop.run(start_step)
    if uses_cache(spec):
        return student, result
    import modelopt.torch.distill as mtd

    return mtd.export(model), result  # the teacher and the hooks dropped: a plain student


def _live(student, teacher, spec: DistillSpec, layer_map: dict[int, int]):
    import modelopt.torch.distill as mtd

    teacher.eval().requires_grad_(False)
    losses, balancer = criterion(spec, layer_map)
    return mtd.convert(student, mode=[("kd_loss", {"teacher_model": teacher,
                                                   "criterion": losses,
                                                   "loss_balancer": balancer})])


def _live_loss(model, batch: Rows) -> torch.Tensor:
    model(batch.ids, use_cache=False)
    return model.compute_kd_loss(loss_reduction_fn=lambda loss: _masked_mean(loss, batch.mask))


def _cached_loss(spec: DistillSpec):
    import modelopt.torch.distill as mtd

    kl = mtd.LogitsDistillationLoss(temperature=spec.temperature, reduction="none")

    def loss(model, batch: Rows) -> torch.Tensor:
        logits = model(batch.ids, use_cache=False).logits
        teacher = torch.full_like(logits, float("-inf"))  # zero probability outside the top-k
        teacher.scatter_(-1, batch.index, batch.logit.to(logits.dtype))
        return _masked_mean(kl(logits, teacher), batch.mask)

    return loss


def _masked_mean(loss: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    if loss.shape != mask.shape:  # a layer's loss, already one number
        return loss.mean()
    return (loss * mask).sum() / mask.sum().clamp(min=1)


class _Loop:
    """The training loop of :func:`distill`: steps, checkpoints, progress, the curve."""

    def __init__(self, model, optimizer, loss_fn, rows: Rows, spec: DistillSpec, work_dir: Path,
                 key: str, log, evaluate) -> None:
        self.model, self.optimizer, self.loss_fn, self.rows = model, optimizer, loss_fn, rows
        self.spec, self.work_dir, self.key, self.log = spec, work_dir, key, log
        self.evaluate = evaluate
        self.started = time.monotonic()

    def run(self, step: int) -> DistillResult:
        spec, first, last, resumed_from = self.spec, None, None, step
        if step == 0:
            self._curve(0, None)
        deadline = self.started + 60 * spec.max_minutes
        while step < spec.max_steps and time.monotonic() < deadline:
            loss = self._step(step)
            step += 1
            first = loss if first is None else first
            last = loss
            if step % spec.checkpoint_every == 0 or step == spec.max_steps:
                _save(self.work_dir, self.key, self.model, self.optimizer, step)
            if spec.eval_every and (step % spec.eval_every == 0 or step == spec.max_steps):
                self._curve(step, loss)
            _report(self.work_dir, step, spec, loss, self.started, resumed_from, self.log)
        self.model.eval()
        stopped_by = "steps" if step >= spec.max_steps else "time"
        if stopped_by == "time":
            _save(self.work_dir, self.key, self.model, self.optimizer, step)
            if spec.eval_every and step % spec.eval_every:
                self._curve(step, last)
        return DistillResult(step, resumed_from, time.monotonic() - self.started, first, last,
                             stopped_by)

    def _step(self, step: int) -> float:
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate(self.spec, step)
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.loss_fn(self.model, self.rows.take(batch_rows(len(self.rows),
                                                                  self.spec.batch_size, step)))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.optimizer.step()
        return loss.item()

    def _curve(self, step: int, loss: float | None) -> None:
        """One point of the curve: the student measured by ``evaluate`` (eval mode, no grad)."""
        if self.evaluate is None or not self.spec.eval_every:
            return
        self.model.eval()
        student_only = getattr(self.model, "only_student_forward", contextlib.nullcontext)
        with torch.no_grad(), student_only():
            point = {"step": step, "tokens": step * self.spec.batch_size * self.rows.ids.shape[1],
                     "elapsed_s": round(time.monotonic() - self.started, 1), "train_loss": loss,
                     **self.evaluate(self.model)}
        path = self.work_dir / CURVE
        points = json.loads(path.read_text()) if path.is_file() else []
        points = [p for p in points if p["step"] < step] + [point]
        _write_json(path, points)
        self.log(f"distill: curve at step {step}: {point}")


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


def _save(work_dir: Path, key: str, model, optimizer, step: int) -> None:
    tmp = work_dir / (CHECKPOINT + ".tmp")
    torch.save({"key": key, "step": step, "student": _student_state(model),
                "optimizer": optimizer.state_dict()}, tmp)
    os.replace(tmp, work_dir / CHECKPOINT)


def _resume(work_dir: Path, key: str, model, optimizer, log) -> int:
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
    log(f"distill: resuming at step {state['step']} from {path}")
    return state["step"]


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data) + "\n")
    os.replace(tmp, path)
