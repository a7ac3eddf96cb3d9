"""``tritonllm build``: plan -> compress -> quantize -> verify -> engine -> repo, each stage skipped
when its output exists and is up to date.

Outputs, under the profile's output directory::

    plan.json                 the planner's numbers and verdict
    compressed/model/         the pruned / distilled / 2:4-sparse HF checkpoint, when the profile
                              has a ``compression:`` section (tritonllm.build.compression.compress); the
                              stages after it read this instead of ``model.dir``
    checkpoint/               TensorRT-LLM checkpoint (config.json, rank<N>.safetensors)
    verify.json               the verifier's report
    engine/                   rank<N>.engine, config.json, tritonllm-manifest.json
    model_repository/         the filled Triton model repository
    stamps/<stage>.json       what each output was made from

A stage is up to date when its stamp's key equals the key computed now: a hash of the profile
sections the stage depends on (``profile.STAGE_SECTIONS``), of the upstream stage's key, and,
for compress (or quantize, when nothing is compressed), of the source checkpoint's files (names,
sizes, modification times). So changing a
serving option re-renders the repository only; touching the model re-runs everything after plan.

Exit statuses (``tritonllm build`` and each stage command): 0 done, 1 plan rejected or checkpoint
failed verification, 3 engine commands printed but not run (no TensorRT-LLM or no GPU here;
the repository is still rendered, pointing at where the engines will be).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

from tritonllm.build import engine as engine_stage
from tritonllm.build.planning import planner
from tritonllm.build import source
from tritonllm.build.profile import BuildProfile, profile_hash, stage_hash

STAGES = ("plan", "compress", "quantize", "verify", "engine", "repo")
EXIT_OK, EXIT_FAILED, EXIT_ENGINE_DEFERRED = 0, 1, engine_stage.EXIT_ENGINE_DEFERRED


@dataclass(frozen=True)
class StageResult:
    stage: str
    status: str  # "done", "skipped" (up to date), "deferred" (engine not buildable), "failed"
    detail: str = ""

    @property
    def exit_code(self) -> int:
        return {"failed": EXIT_FAILED, "deferred": EXIT_ENGINE_DEFERRED}.get(self.status, EXIT_OK)


class Build:
    """One profile's build directory and its stages."""

    def __init__(self, profile: BuildProfile, root: Path | None = None) -> None:
        self.profile = profile
        self.root = Path(root) if root else profile.output_path
        self.plan_json = self.root / "plan.json"
        self.compressed = self.root / "compressed"
        self.checkpoint = self.root / "checkpoint"
        self.verify_json = self.root / "verify.json"
        self.engine_dir = self.root / "engine"
        self.repo = self.root / "model_repository"

    # ---- keys and stamps ---------------------------------------------------------------------

    def key(self, stage: str) -> str:
        p = self.profile
        upstream = (lambda: self.key("compress")) if self.compresses else (
            lambda: _model_fingerprint(p))
        parts = {"plan": lambda: profile_hash(p),
                 "compress": lambda: stage_hash(p, "compress") + _model_fingerprint(p),
                 "quantize": lambda: stage_hash(p, "quantize") + upstream(),
                 "verify": lambda: self.key("quantize"),
                 "engine": lambda: stage_hash(p, "engine") + self.key("quantize"),
                 "repo": lambda: stage_hash(p, "repo") + self.key("engine")}
        return hashlib.sha256(parts[stage]().encode()).hexdigest()[:16]

    def _stamp_path(self, stage: str) -> Path:
        return self.root / "stamps" / f"{stage}.json"

    def up_to_date(self, stage: str) -> bool:
        path = self._stamp_path(stage)
        if not path.is_file() or not self._output(stage).exists():
            return False
        return json.loads(path.read_text()).get("key") == self.key(stage)

    def _stamp(self, stage: str, status: str) -> None:
        path = self._stamp_path(stage)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"stage": stage, "key": self.key(stage), "status": status,
                                    "time": time.strftime("%Y-%m-%dT%H:%M:%S")}) + "\n")

    def _output(self, stage: str) -> Path:
        return {"plan": self.plan_json, "compress": self.compressed / "model" / "config.json",
                "quantize": self.checkpoint / "config.json",
                "verify": self.verify_json, "engine": self.engine_dir,
                "repo": self.repo}[stage]

    # ---- stages ------------------------------------------------------------------------------

    def run(self, stage: str, force: bool = False) -> StageResult:
        if not force and self.up_to_date(stage):
            return StageResult(stage, "skipped", f"up to date: {self._output(stage)}")
        result = getattr(self, f"_run_{stage}")()
        if result.status == "done":
            self._stamp(stage, result.status)
        return result

    def _run_plan(self) -> StageResult:
        plan = self.plan()
        self.root.mkdir(parents=True, exist_ok=True)
        self.plan_json.write_text(json.dumps(plan.to_dict(), indent=2) + "\n")
        print(planner.format_plan(plan))
        return StageResult("plan", "done" if plan.ok else "failed", plan.verdict)

    def plan(self) -> planner.Plan:
        return planner.plan(self.profile, self.model_arch())

    # ---- the model the stages after compress read ---------------------------------------------

    @property
    def compresses(self) -> bool:
        return self.profile.compression.enabled

    def model_dir(self) -> Path:
        """The HF checkpoint quantize, verify and the repository use: the compressed one when
        the profile compresses (it must have been made), else the source."""
        if not self.compresses:
            return source.require_checkpoint_dir(self.profile)
        path = self.compressed / "model"
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"compression: no compressed checkpoint at {path}; run "
                                    "`tritonllm compress PROFILE` first")
        return path

    def model_arch(self):
        """What the planner sizes: the compressed checkpoint's numbers once it exists, before
        that the source's numbers cut as the profile says."""
        from tritonllm.build.planning.architectures import from_model_dir
        from tritonllm.build.compression.compress import compressed_arch

        made = self.compressed / "model"
        if self.compresses and (made / "config.json").is_file():
            return from_model_dir(made)
        return compressed_arch(source.model_arch(self.profile), self.profile.compression)

    def _run_compress(self) -> StageResult:
        from tritonllm.build.compression.compress import compress

        if not self.compresses:
            return StageResult("compress", "skipped", "nothing to compress (no compression: "
                               "section in the profile)")
        result = compress(self.profile.compression, source.require_checkpoint_dir(self.profile),
                          self.compressed, key=self.key("compress"))
        return StageResult("compress", "done", result.detail)

    def _run_quantize(self) -> StageResult:
        from tritonllm.build.quantization.quantize import quantize

        plan = self.plan()  # cheap, and it catches what would fail deep inside ModelOpt
        if not plan.ok:
            return StageResult("quantize", "failed", "the plan is rejected:\n"
                               + "\n".join(plan.problems))
        result = quantize(self.profile, self.checkpoint, model_dir=self.model_dir())
        return StageResult("quantize", "done", f"{self.checkpoint} (quant_algo "
                           f"{result.quant_algo}, kv {result.kv_cache_quant_algo}, "
                           f"{result.seconds:.0f} s)")

    def _run_verify(self) -> StageResult:
        from tritonllm.build.verify import verify

        if not (self.checkpoint / "config.json").is_file():
            return StageResult("verify", "failed", f"no checkpoint at {self.checkpoint}; run "
                               "`tritonllm quantize PROFILE` first")
        report = verify(self.profile, self.checkpoint, self.model_dir())
        self.verify_json.write_text(json.dumps(report.to_dict(), indent=2) + "\n")
        lines = list(report.problems) + list(report.notes)
        summary = (f"{report.tensors_checked} tensors checked, worst error / bound "
                   f"{report.worst_bound_ratio:.3f}")
        return StageResult("verify", "done" if report.ok else "failed",
                           "\n".join([summary, *lines]))

    def _run_engine(self) -> StageResult:
        result = engine_stage.build_engine(self.profile, self.checkpoint, self.engine_dir)
        if result.built:
            return StageResult("engine", "done", f"{self.engine_dir}")
        if not result.deferred:
            return StageResult("engine", "done", "cpu target: the CPU engine serves the "
                               "checkpoint; nothing to compile")
        return StageResult("engine", "deferred", f"{result.reason}\n{result.shell()}")

    def _run_repo(self) -> StageResult:
        from tritonllm.build import repo_values

        model_dir = (self.compressed / "model" if self.compresses
                     else source.checkpoint_dir(self.profile, fetch=False))
        repo = repo_values.render(
            self.profile, self.repo, engine_dir=self.engine_dir,
            tokenizer_dir=source.tokenizer_dir(self.profile),
            max_tokens_in_paged_kv_cache=self.plan().kv_tokens, model_dir=model_dir)
        return StageResult("repo", "done", str(repo))


def _model_fingerprint(profile: BuildProfile) -> str:
    """Names, sizes and modification times of the source checkpoint's files."""
    path = source.checkpoint_dir(profile, fetch=False)
    if path is None:
        return "absent"
    files = sorted(p for p in path.iterdir() if p.is_file())
    return ";".join(f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in files)


def build(profile: BuildProfile, stages: tuple[str, ...] = STAGES, force: bool = False,
          root: Path | None = None, report=print) -> int:
    """Run ``stages`` in order; stop at the first failure. Returns the exit status."""
    b = Build(profile, root)
    code = EXIT_OK
    for stage in stages:
        result = b.run(stage, force=force)
        report(f"[{stage}] {result.status}: {result.detail}")
        if result.status == "failed":
            return EXIT_FAILED
        code = max(code, result.exit_code)
    return code
