"""The container entrypoint: a build profile in, a serving tritonserver out.

``tritonllm deploy entrypoint`` reads the profile (``--profile`` or ``$TRITONLLM_PROFILE``):

- CPU (no profile, or ``target.gpu: cpu``): the CPU twin, exactly what ``tritonllm serve`` /
  ``make serve`` runs (tritonllm.serve.cpu), with the profile's settings as its built
  repository has them (``tritonllm.build.repo_values.cpu_deployment``, which
  ``tritonllm serve --profile`` runs too).
- GPU: check the node (TensorRT-LLM installed, enough GPUs of one architecture) → fetch the
  checkpoint if it is missing and ``$TRITONLLM_HF_REPO`` is set → under the cache lock, decide
  reuse/build/rebuild from the engine manifest (tritonllm.deploy.cache), run ``tritonllm build``
  when needed, render the model repository → on a LeaderWorkerSet, wait for the worker pods →
  launch tritonserver with world size tp x pp through mpirun (tritonllm.deploy.launch),
  forwarding SIGTERM so in-flight requests drain (tritonllm.deploy.supervise).

Either way the OpenAI-compatible frontend runs beside the server on ``serving.openai_port``
(default 9000; 0: none), started before it and stopped after it (tritonllm.deploy.frontend).

``--dry-run`` prints every decision and command line and starts nothing.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tritonllm.build.planning.gpus import get_device
from tritonllm.build.profile import BuildProfile, engine_hash, load_profile
from tritonllm.deploy import cache, frontend
from tritonllm.deploy.launch import LaunchSpec
from tritonllm.deploy.multinode import RSH_AGENT, PodGroup, group_from_env
from tritonllm.deploy.node import NodeFacts
from tritonllm.gpu_stack import TENSORRT_LLM_VERSION, TRITON_GPU_IMAGE
from tritonllm.serve.launcher import ADMIN_KEY_ENV, Ports, new_admin_key

if TYPE_CHECKING:
    from tritonllm.openai.settings import FrontendSettings

PROFILE_ENV = "TRITONLLM_PROFILE"
ALLOW_OTHER_ENV = "TRITONLLM_ALLOW_OTHER_TENSORRT_LLM"
HF_REPO_ENV = "TRITONLLM_HF_REPO"


class DeployError(RuntimeError):
    """The node cannot serve this profile (no TensorRT-LLM, too few GPUs, a failed build)."""


@dataclass(frozen=True)
class EntrypointOptions:
    """``gpus_per_pod``: GPUs in each pod of a multi-node group (0: one node holds them all).
    ``build_command``: argv prefix that builds a profile file (the build pipeline's CLI)."""

    profile: str | None = None
    ports: Ports = Ports()
    exit_timeout_s: int = 60
    gpus_per_pod: int = 0
    hf_repo: str | None = None
    worker_wait_s: int = 900
    repo_dir: Path | None = None  # CPU path only; GPU repositories live beside their engine
    log_file: Path | None = None
    dry_run: bool = False
    build_command: tuple[str, ...] = (sys.executable, "-m", "tritonllm.cli", "build")

    def __post_init__(self) -> None:
        if self.exit_timeout_s < 0:
            raise ValueError(f"exit_timeout_s: must be >= 0 seconds, got {self.exit_timeout_s}")
        if self.gpus_per_pod < 0:
            raise ValueError(f"gpus_per_pod: must be >= 0, got {self.gpus_per_pod}")
        if self.worker_wait_s < 1:
            raise ValueError(f"worker_wait_s: must be >= 1 second, got {self.worker_wait_s}")


@dataclass(frozen=True)
class GpuPlan:
    """Everything the GPU path will do, decided before anything runs."""

    profile: BuildProfile
    facts: NodeFacts
    group: PodGroup | None
    root: Path
    launch: LaunchSpec
    decision: cache.CacheDecision  # as seen when planning; re-decided under the lock
    frontend: FrontendSettings | None = None  # None: serving.openai_port is 0

    @property
    def build_dir(self) -> Path:
        return self.root / "build"

    @property
    def repo_dir(self) -> Path:
        return self.root / "model_repository"

    @property
    def lock_path(self) -> Path:
        return self.root / ".lock"


def run(options: EntrypointOptions, env: dict[str, str] | None = None) -> int:
    env = dict(os.environ if env is None else env)
    profile = _load(options, env)
    if profile is None or get_device(profile.target.gpu).is_cpu:
        return serve_cpu(profile, options)
    from tritonllm.deploy.node import detect

    return serve_gpu(plan_gpu(profile, detect(), options, env), options, env)


def _load(options: EntrypointOptions, env: dict[str, str]) -> BuildProfile | None:
    path = options.profile or env.get(PROFILE_ENV)
    if not path:
        return None
    _log(f"profile: {path}")
    return load_profile(path)


# --- CPU --------------------------------------------------------------------------------------

def serve_cpu(profile: BuildProfile | None, options: EntrypointOptions) -> int:
    """Render the CPU repository and run tritonserver as ``tritonllm serve`` does (the same
    launcher: its command line and environment), under the signal-forwarding supervisor, with
    the OpenAI frontend beside it."""
    from tritonllm.serve.launcher import TritonServer, server_env

    from tritonllm.build.repo_values import cpu_deployment

    deployment = cpu_deployment(profile, options.repo_dir)
    openai = frontend.frontend_settings(profile, options.ports, deployment.decoupled)
    if options.dry_run:
        print(f"CPU twin: {deployment}\nports: {options.ports}\n{frontend.describe(openai)}")
        return 0
    extra = [f"--log-file={options.log_file}"] if options.log_file else []
    # In a container the pod network is the boundary: bind all interfaces (a Service must reach
    # the ports); the admin APIs stay closed without $TRITONLLM_ADMIN_KEY (SECURITY.md).
    server = TritonServer(deployment.prepare(), options.ports, extra_args=tuple(extra),
                          host="0.0.0.0", grace_period_s=options.exit_timeout_s,
                          admin_key=os.environ.get(ADMIN_KEY_ENV))
    _log(f"CPU twin on HTTP :{options.ports.http}, gRPC :{options.ports.grpc}, "
         f"metrics :{options.ports.metrics}")
    return frontend.run_with_frontend(openai, server.command(), server_env(),
                                      options.exit_timeout_s + 15, options.log_file)


# --- GPU --------------------------------------------------------------------------------------

def plan_gpu(profile: BuildProfile, facts: NodeFacts, options: EntrypointOptions,
             env: dict[str, str], root: Path | None = None) -> GpuPlan:
    """Check the node against the profile and decide what to run; raises DeployError.
    ``root``: where the build and the repository go (default: the profile's directory in the
    engine cache, :func:`engine_root`)."""
    if not facts.tensorrt_llm_version:
        raise DeployError("TensorRT-LLM is not installed here: run the GPU image (Dockerfile "
                          "target gpu), or use target.gpu: cpu for the CPU twin")
    _check_tensorrt_llm(facts.tensorrt_llm_version, env)
    group = group_from_env(env, options.gpus_per_pod) if options.gpus_per_pod else None
    _check_gpus(profile, facts, group, options)
    root = root or engine_root(profile.name, facts)
    launch = LaunchSpec(model_repository=str(root / "model_repository"),
                        tp_size=profile.parallel.tp_size, pp_size=profile.parallel.pp_size,
                        ports=options.ports, exit_timeout_s=options.exit_timeout_s,
                        hosts=group.hosts if group else (),
                        rsh_agent=RSH_AGENT if group else None,
                        log_file=str(options.log_file) if options.log_file else None,
                        admin_key=env.get(ADMIN_KEY_ENV) or new_admin_key())
    openai = frontend.frontend_settings(profile, options.ports, profile.serving.decoupled)
    return GpuPlan(profile, facts, group, root, launch, _decide(profile, facts, root / "build"),
                   openai)


def engine_root(name: str, facts: NodeFacts) -> Path:
    """``name``'s directory in the engine cache for this node's TensorRT-LLM and GPU."""
    from tritonllm.model_source import cache_root

    return cache.engine_root(cache_root(), name, facts.tensorrt_llm_version, facts.sm_tag)


def _check_tensorrt_llm(version: str, env: dict[str, str]) -> None:
    """The build flags, backend parameters and pins are TENSORRT_LLM_VERSION's: another minor
    release is refused before a long build that might not load (override: ALLOW_OTHER_ENV=1)."""
    if version.split(".")[:2] != TENSORRT_LLM_VERSION.split(".")[:2] and \
            env.get(ALLOW_OTHER_ENV) != "1":
        raise DeployError(f"this node has TensorRT-LLM {version}; tritonllm targets "
                          f"{TENSORRT_LLM_VERSION} ({TRITON_GPU_IMAGE}); set "
                          f"{ALLOW_OTHER_ENV}=1 to build and serve anyway")


def _check_gpus(profile: BuildProfile, facts: NodeFacts, group: PodGroup | None,
                options: EntrypointOptions) -> None:
    world = profile.parallel.world_size
    if group is not None and facts.gpu_count < options.gpus_per_pod:
        raise DeployError(f"gpus_per_pod is {options.gpus_per_pod} but this pod sees "
                          f"{facts.gpu_count} GPUs")
    available = group.gpu_count if group else facts.gpu_count
    if available < world:
        where = f"{group.size} pods x {group.gpus_per_pod}" if group else "this node"
        raise DeployError(f"the engine needs {world} GPUs (tp_size={profile.parallel.tp_size} "
                          f"x pp_size={profile.parallel.pp_size}) but {where} has {available}")


def _decide(profile: BuildProfile, facts: NodeFacts, build_dir: Path) -> cache.CacheDecision:
    return cache.decide(build_dir, profile_hash=engine_hash(profile),
                        tensorrt_llm_version=facts.tensorrt_llm_version,
                        compute_capability=facts.compute_capability,
                        world_size=profile.parallel.world_size)


def serve_gpu(plan: GpuPlan, options: EntrypointOptions, env: dict[str, str]) -> int:
    if options.dry_run:
        print(describe(plan, options))
        return 0
    fetch_model(plan.profile, options.hf_repo or env.get(HF_REPO_ENV))
    prepare_engine(plan, options.build_command)
    if plan.group is not None:
        _wait_for_workers(plan.group, options.worker_wait_s)
    return launch(plan, env, options.log_file)


def fetch_model(profile: BuildProfile, hf_repo: str | None) -> None:
    """Download the checkpoint once when it is missing (one replica at a time)."""
    from tritonllm.deploy.model_fetch import ensure_model, has_checkpoint

    model_dir = profile.model_path()
    if model_dir is None or has_checkpoint(model_dir):
        return
    with cache.exclusive(model_dir.with_name(f".{model_dir.name}.lock")):
        ensure_model(model_dir, hf_repo)


def prepare_engine(plan: GpuPlan, build_command: tuple[str, ...]) -> Path:
    """Under the cache lock (one replica builds at a time): reuse, or (re)build and check the
    result; then render the repository. Returns the engine directory."""
    with cache.exclusive(plan.lock_path):
        return _prepare_engine(plan, build_command)


def _prepare_engine(plan: GpuPlan, build_command: tuple[str, ...]) -> Path:
    decision = _decide(plan.profile, plan.facts, plan.build_dir)
    _log(f"engine cache: {decision.action}: {decision.reason}")
    if decision.action != cache.REUSE:
        cache.discard(decision)
        build(plan, build_command)
        decision = _decide(plan.profile, plan.facts, plan.build_dir)
        if decision.action != cache.REUSE:
            raise DeployError(f"the build finished but its engine cannot be used: "
                              f"{decision.reason}")
    render_gpu_repository(plan.profile, decision.engine_dir, plan.repo_dir)
    return decision.engine_dir


def build_argv(plan: GpuPlan, build_command: tuple[str, ...]) -> list[str]:
    """``tritonllm build PROFILE --output-dir <cache build dir>``."""
    if not plan.profile.source:
        raise DeployError("profile: the build needs the profile's YAML file (load_profile)")
    return [*build_command, plan.profile.source, "--output-dir", str(plan.build_dir)]


def build(plan: GpuPlan, build_command: tuple[str, ...]) -> None:
    """Run the build pipeline on the profile, its output directory in the engine cache."""
    argv = build_argv(plan, build_command)
    _log(f"building: {shlex.join(argv)}")
    result = subprocess.run(argv)
    if result.returncode != 0:
        raise DeployError(f"engine build failed with status {result.returncode}: "
                          f"{shlex.join(argv)}")


def render_gpu_repository(profile: BuildProfile, engine_dir: Path, repo_dir: Path) -> Path:
    """The build pipeline's repository values (tritonllm.build.repo_values), pointed at the
    cached engine and rendered by the one renderer."""
    from tritonllm.build import repo_values

    tokenizer = Path(profile.model.tokenizer_dir or profile.model.dir)
    # serving.engine_dir is for engines built elsewhere; here the engine is where we found it.
    profile = dataclasses.replace(profile, serving=dataclasses.replace(profile.serving,
                                                                       engine_dir=""))
    return repo_values.render(profile, repo_dir, engine_dir=engine_dir, tokenizer_dir=tokenizer,
                              max_tokens_in_paged_kv_cache=0)  # sizes the CPU engine only


def _wait_for_workers(group: PodGroup, timeout_s: int) -> None:
    argv = group.wait_command(timeout_s)
    _log(f"waiting for worker pods: {shlex.join(argv)}")
    if subprocess.run(argv).returncode != 0:
        raise DeployError(f"worker pods {', '.join(group.pods[1:])} not Ready after "
                          f"{timeout_s} s")


def launch(plan: GpuPlan, env: dict[str, str], log_file: Path | None = None) -> int:
    """tritonserver (or mpirun) under the supervisor, the OpenAI frontend beside it."""
    spec = plan.launch
    command = shlex.join(spec.command())
    _log(f"world size {spec.world_size}: "
         f"{command.replace(spec.admin_key, '<admin key>') if spec.admin_key else command}")
    return frontend.run_with_frontend(plan.frontend, spec.command(), spec.env(env),
                                      spec.stop_timeout_s, log_file)


def describe(plan: GpuPlan, options: EntrypointOptions) -> str:
    """The dry-run report: facts, cache decision, build and launch command lines."""
    f = plan.facts
    lines = [f"profile: {plan.profile.name} (engine hash {engine_hash(plan.profile)})",
             f"node: TensorRT-LLM {f.tensorrt_llm_version}, {f.gpu_count} x {f.gpu_name} "
             f"(compute capability {f.compute_capability})",
             f"group: {', '.join(plan.group.hosts) if plan.group else 'single node'}",
             f"engine cache: {plan.decision.action}: {plan.decision.reason}"]
    if plan.decision.action != cache.REUSE:
        lines.append(f"build: {shlex.join(build_argv(plan, options.build_command))}")
    lines.append(f"repository: {plan.repo_dir}")
    command = shlex.join(plan.launch.command())
    if plan.launch.admin_key:  # never print the secret itself
        command = command.replace(plan.launch.admin_key, "<admin key>")
    lines.append(f"launch (world size {plan.launch.world_size}): {command}")
    lines.append(frontend.describe(plan.frontend))
    return "\n".join(lines)


def _log(message: str) -> None:
    print(f"[tritonllm] {message}", file=sys.stderr, flush=True)
