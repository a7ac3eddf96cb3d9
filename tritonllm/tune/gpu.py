"""The real measurement on a GPU node: each candidate deployed the way the container's
entrypoint deploys a profile, then load-tested like the CPU twin (:mod:`tritonllm.tune.measure`).

Per candidate, on this node (one node; ``tp_size * pp_size`` GPUs of it):

- the candidate is written to ``<out>/profiles/<id>.yaml`` (the build reads a profile file);
- its engine comes from the engine cache (:mod:`tritonllm.deploy.cache`), through the
  entrypoint's own planning and preparation (:func:`tritonllm.deploy.entrypoint.plan_gpu`,
  :func:`~tritonllm.deploy.entrypoint.prepare_engine`): a candidate whose engine equals the
  base's shares the base's directory, the one ``tritonllm deploy entrypoint`` serves from, so
  a runtime-only change re-renders the repository and restarts the server without a build;
  any other engine gets a directory of its own, ``<profile name>-<engine hash>``, built there
  once by ``tritonllm build`` and kept: :meth:`GpuMeasurer.link_engine` points the written
  winner's cache entry at its engine, so deploying the winner builds nothing;
- tritonserver starts with the entrypoint's command line (:class:`~tritonllm.deploy.launch.
  LaunchSpec`, ``mpirun`` for more than one rank) on free ports, its output in
  ``<out>/repos/<id>.log``.

A candidate that cannot run here (the planner rejects it, checked before any build; the build
fails; the server does not load it) is a ``ValueError`` naming why; the tuner reports it and
goes on.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path

import yaml

from tritonllm.build.profile import BuildProfile, engine_hash, load_profile
from tritonllm.deploy.entrypoint import engine_root
from tritonllm.deploy.launch import TRITONSERVER
from tritonllm.deploy.node import NodeFacts
from tritonllm.tune.measure import CpuTwinMeasurer, prompt_tokenizer

LOAD_TIMEOUT_S = 1800.0  # engine load and warm-up of a large model on several GPUs
MAX_PROCESSES = 8


def gpu_node_processes() -> int:
    """Locust processes for a GPU node's request rates: half its cores, at most
    ``MAX_PROCESSES``, so that the load generator is not what limits a probe (one Python
    process parses every streamed event of every request)."""
    return max(1, min(MAX_PROCESSES, (os.cpu_count() or 2) // 2))


class GpuMeasurer(CpuTwinMeasurer):
    """``base``: the profile tuning starts from (its engine is the shared one). ``facts``: this
    node (:func:`tritonllm.deploy.node.detect`). ``build_command``: the argv prefix that builds
    a profile file, as the entrypoint runs it. ``tritonserver``: the server binary.
    ``processes``: Locust processes per run (default :func:`gpu_node_processes`)."""

    def __init__(self, out_dir: Path, workload: str, slo, probe_s: float, *,
                 base: BuildProfile, facts: NodeFacts, env: dict[str, str] | None = None,
                 build_command: tuple[str, ...] = (sys.executable, "-m", "tritonllm.cli",
                                                   "build"),
                 tritonserver: str = TRITONSERVER, processes: int | None = None) -> None:
        if processes is None:
            processes = gpu_node_processes()
        super().__init__(out_dir, workload, slo, probe_s, processes=processes)
        if not facts.tensorrt_llm_version:
            raise ValueError(f"target.gpu: {base.target.gpu!r}: TensorRT-LLM is not installed "
                             "here; tune a GPU profile on the GPU node (the image's gpu "
                             "target), or a cpu-target profile here")
        self.base_name, self.base_engine = base.name, engine_hash(base)
        self.facts = facts
        self.env = dict(os.environ if env is None else env)
        self.build_command = tuple(build_command)
        self.tritonserver = tritonserver

    def engine_name(self, profile: BuildProfile) -> str:
        """The engine cache entry a candidate's engine lives in: the base's for the base's
        engine, else one named after the base and the engine."""
        digest = engine_hash(profile)
        return self.base_name if digest == self.base_engine else f"{self.base_name}-{digest[:12]}"

    def _launch(self, profile: BuildProfile):
        from tritonllm.deploy.entrypoint import (DeployError, EntrypointOptions, plan_gpu,
                                                 prepare_engine)
        from tritonllm.deploy.launch import LaunchedServer
        from tritonllm.serve.launcher import LaunchError, Ports

        candidate = self._write(profile)
        self._check_plan(candidate)
        root = engine_root(self.engine_name(candidate), self.facts)
        options = EntrypointOptions(ports=Ports.free(), build_command=self.build_command)
        try:
            plan = plan_gpu(candidate, self.facts, options, self.env, root=root)
            prepare_engine(plan, self.build_command)
        except DeployError as exc:
            raise ValueError(str(exc)) from None
        launch = dataclasses.replace(plan.launch, tritonserver=self.tritonserver)
        server = LaunchedServer(launch, log_file=self.out_dir / "repos" / f"{self._id}.log",
                                env=self.env)
        try:
            server.start(timeout_s=LOAD_TIMEOUT_S)
        except LaunchError as exc:
            raise ValueError(f"tritonserver did not start: {exc}") from None
        return server, prompt_tokenizer(candidate)

    def _check_plan(self, candidate: BuildProfile) -> None:
        """The planner's verdict before any build: a candidate that cannot fit is refused with
        its reason; one that fits shows what it costs in GPU memory."""
        from tritonllm.build import source
        from tritonllm.build.planning import planner

        plan = planner.accepted_plan(candidate, source.model_arch(candidate), "it")
        print(f"[tune] planner: weights {plan.weight_bytes_per_gpu / planner.GIB:.1f} GiB a "
              f"GPU, KV cache {plan.kv_tokens:,} tokens ({plan.max_full_sequences} full "
              "sequences)", flush=True)

    def link_engine(self, tuned: BuildProfile) -> Path | None:
        """Point the engine cache entry of ``tuned`` (the written winner, by its own name) at
        the engine tuning built for it, so deploying it reuses that engine; None when an entry
        of that name is already a real directory (the cache then decides as always)."""
        source = engine_root(self.engine_name(tuned), self.facts)
        link = engine_root(tuned.name, self.facts)
        if not source.is_dir() or (link.exists() and not link.is_symlink()):
            return None
        if link.is_symlink():  # an earlier tune's winner
            link.unlink()
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(source, target_is_directory=True)
        return link

    def _write(self, profile: BuildProfile) -> BuildProfile:
        """The candidate as a profile file, loaded back (the build takes a file)."""
        path = self.out_dir / "profiles" / f"{self._id}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(profile.to_dict(), sort_keys=False))
        return load_profile(path)
