"""The tritonserver command line for a TensorRT-LLM engine of world size tp x pp.

Leader mode, as TensorRT-LLM 1.1.x's ``triton_backend/scripts/launch_triton_server.py`` launches
it: one MPI world of ``tp_size * pp_size`` ranks, one tritonserver process per rank (one GPU
each), joined in a single ``mpirun`` as MPMD app contexts separated by ``:``. Rank 0 loads the
whole repository and serves HTTP/gRPC/metrics. Every other rank loads only the engine model
(``--model-control-mode=explicit --load-model=tensorrt_llm``); its TensorRT-LLM backend never
returns from model-instance initialization, so those processes never bind the ports they are
given. Each rank gets its own Python-backend shared-memory prefix (``prefix<rank>_``) so ranks
on one node do not collide.

World size 1 runs tritonserver directly, without MPI (the script's ``--no-mpi`` mode), so
signals reach the server itself.

Shutdown: SIGTERM makes tritonserver stop accepting requests and wait up to
``--exit-timeout-secs`` for those in flight. ``mpirun`` (Open MPI 4.1 in the NGC container)
answers SIGTERM by signalling every rank and sending SIGKILL after
``odls_base_sigkill_timeout`` seconds (default 1 s: too short to drain), so :meth:`env` sets it
to the exit timeout.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from tritonllm.serve.launcher import Ports, TritonServer, restricted_api_args

TRITONSERVER = "/opt/tritonserver/bin/tritonserver"
ENGINE_MODEL = "tensorrt_llm"


@dataclass(frozen=True)
class LaunchSpec:
    """One tritonserver deployment of an engine built for ``tp_size * pp_size`` GPUs.

    ``hosts``: for a multi-node world, ``"pod:slots"`` entries (rank 0's host first); empty on
    one node. ``rsh_agent``: what mpirun uses instead of ssh to start ranks on other hosts.
    ``exit_timeout_s``: seconds tritonserver waits for in-flight requests on shutdown.
    ``admin_key``: when set, Triton's shared-memory, model-repository, logging and trace APIs
    answer only requests with the header ``triton-admin-key: <admin_key>``
    (tritonllm.serve.launcher.restricted_api_args).
    """

    model_repository: str
    tp_size: int = 1
    pp_size: int = 1
    ports: Ports = Ports()
    tritonserver: str = TRITONSERVER
    mpirun: str = "mpirun"
    engine_model: str = ENGINE_MODEL
    exit_timeout_s: int = 60
    hosts: tuple[str, ...] = ()
    rsh_agent: str | None = None
    log_file: str | None = None
    admin_key: str | None = None

    def __post_init__(self) -> None:
        for name in ("tp_size", "pp_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: must be >= 1, got {getattr(self, name)}")
        if self.exit_timeout_s < 0:
            raise ValueError(f"exit_timeout_s: must be >= 0 seconds, got {self.exit_timeout_s}")
        if self.hosts and host_slots(self.hosts) < self.world_size:
            raise ValueError(f"hosts: {host_slots(self.hosts)} slots in {','.join(self.hosts)} "
                             f"but the world size is {self.world_size} (tp x pp)")
        if self.hosts and self.world_size == 1:
            raise ValueError("hosts: a world of one rank runs on this node; give no hosts")

    @property
    def world_size(self) -> int:
        return self.tp_size * self.pp_size

    def command(self) -> list[str]:
        """The argv to run: tritonserver alone (world size 1) or one mpirun for all ranks."""
        if self.world_size == 1:
            return self.rank_args(0)
        argv = [self.mpirun, "--allow-run-as-root"]
        if self.hosts:
            argv += ["--host", ",".join(self.hosts)]
        if self.rsh_agent:
            argv += ["--mca", "plm_rsh_agent", self.rsh_agent]
        for rank in range(self.world_size):
            argv += ["-n", "1", *self.rank_args(rank), ":"]
        return argv[:-1]  # no separator after the last app context

    def rank_args(self, rank: int) -> list[str]:
        """tritonserver's arguments for one rank (the reference script's, in its order)."""
        argv = [self.tritonserver, f"--model-repository={self.model_repository}"]
        if self.exit_timeout_s:
            argv.append(f"--exit-timeout-secs={self.exit_timeout_s}")
        argv += [f"--grpc-port={self.ports.grpc}", f"--http-port={self.ports.http}",
                 f"--metrics-port={self.ports.metrics}"]
        if self.log_file and rank == 0:
            argv.append(f"--log-file={self.log_file}")
        if self.admin_key:
            argv += restricted_api_args(self.admin_key)
        if rank != 0:
            argv += ["--model-control-mode=explicit", f"--load-model={self.engine_model}"]
        argv += ["--disable-auto-complete-config",
                 f"--backend-config=python,shm-region-prefix-name=prefix{rank}_"]
        return argv

    def env(self, base: dict[str, str]) -> dict[str, str]:
        """``base`` plus what the launch needs: mpirun's kill delay long enough to drain, and
        no cross-memory-attach copies between ranks (they need ptrace, which containers
        without CAP_SYS_PTRACE refuse; TensorRT-LLM moves tensors with NCCL, not MPI)."""
        env = dict(base)
        if self.world_size > 1:
            env["OMPI_MCA_odls_base_sigkill_timeout"] = str(max(self.exit_timeout_s, 1))
            env.setdefault("OMPI_MCA_btl_vader_single_copy_mechanism", "none")
        return env

    @property
    def stop_timeout_s(self) -> int:
        """Longest an orderly stop can take: mpirun may wait its kill delay twice (before
        SIGTERM and before SIGKILL), plus a margin for process exit."""
        return 2 * self.exit_timeout_s + 15 if self.world_size > 1 else self.exit_timeout_s + 15


def host_slots(hosts: tuple[str, ...]) -> int:
    """Total MPI slots in ``"host:slots"`` entries (a bare host counts one slot)."""
    total = 0
    for entry in hosts:
        name, _, slots = entry.partition(":")
        if not name or (slots and not slots.isdigit()):
            raise ValueError(f"hosts: expected 'host:slots', got {entry!r}")
        total += int(slots) if slots else 1
    return total


class LaunchedServer(TritonServer):
    """A :class:`LaunchSpec` run as a :class:`TritonServer`: ``start`` waits until rank 0 is
    ready on ``spec.ports``, ``stop`` drains for the spec's exit timeout (mpirun's kill delay
    included). Output of every rank goes to ``log_file``. ``env``: the environment the spec's
    additions go onto (default: this process's)."""

    def __init__(self, spec: LaunchSpec, log_file=None, env: dict[str, str] | None = None):
        super().__init__(spec.model_repository, spec.ports, log_file,
                         grace_period_s=spec.exit_timeout_s, admin_key=spec.admin_key)
        self.spec = spec
        self._base_env = dict(os.environ if env is None else env)

    def command(self) -> list[str]:
        return self.spec.command()

    def env(self) -> dict[str, str]:
        return self.spec.env(self._base_env)

    @property
    def stop_timeout_s(self) -> float:
        return self.spec.stop_timeout_s
