"""One MPI world over the pods of a LeaderWorkerSet group (multi-node tensor/pipeline parallel).

LeaderWorkerSet names a group's pods ``<lws>-<group>`` (the leader, worker index 0) and
``<lws>-<group>-<i>`` for workers 1..size-1, and tells every container its group through
``LWS_LEADER_ADDRESS`` (``<leader pod>.<service>.<namespace>``) and ``LWS_GROUP_SIZE``.

The leader runs ``mpirun`` with every pod of the group as a host of ``gpus_per_pod`` slots;
ranks fill the hosts in order, so rank 0 (which serves HTTP/gRPC) lands on the leader. mpirun
starts the remote ranks through ``kubectl exec`` (the ``tritonllm-kubectl-rsh`` agent shipped
in the image, from deploy/bin/) instead of ssh, so worker pods need no sshd and no keys, only
a service account allowed to ``pods/exec`` in the namespace. Workers run ``tritonllm deploy
worker``: an idle process that keeps the pod up until it is told to stop.
"""

from __future__ import annotations

import signal
import sys
from dataclasses import dataclass

RSH_AGENT = "tritonllm-kubectl-rsh"
CONTAINER = "triton"  # the container name kubectl exec targets, in leader and worker pods


@dataclass(frozen=True)
class PodGroup:
    """``leader``: the leader pod's name; ``size``: pods in the group, leader included."""

    leader: str
    size: int
    gpus_per_pod: int

    def __post_init__(self) -> None:
        if not self.leader:
            raise ValueError("leader: the leader pod name is empty")
        if self.size < 1:
            raise ValueError(f"size: must be >= 1 pod, got {self.size}")
        if self.gpus_per_pod < 1:
            raise ValueError(f"gpus_per_pod: must be >= 1, got {self.gpus_per_pod}")

    @property
    def pods(self) -> list[str]:
        return [self.leader] + [f"{self.leader}-{i}" for i in range(1, self.size)]

    @property
    def hosts(self) -> tuple[str, ...]:
        return tuple(f"{pod}:{self.gpus_per_pod}" for pod in self.pods)

    @property
    def gpu_count(self) -> int:
        return self.size * self.gpus_per_pod

    def wait_command(self, timeout_s: int) -> list[str]:
        """kubectl: block until every worker pod is Ready (exec needs a running container)."""
        workers = [f"pod/{pod}" for pod in self.pods[1:]]
        return ["kubectl", "wait", "--for=condition=Ready", f"--timeout={timeout_s}s", *workers]


def group_from_env(env: dict[str, str], gpus_per_pod: int) -> PodGroup | None:
    """The LeaderWorkerSet group this pod belongs to, or None outside one (or of size 1)."""
    address = env.get("LWS_LEADER_ADDRESS", "")
    size = env.get("LWS_GROUP_SIZE", "")
    if not address or not size:
        return None
    if not size.isdigit():
        raise ValueError(f"LWS_GROUP_SIZE: expected a pod count, got {size!r}")
    if int(size) == 1:
        return None
    return PodGroup(leader=address.split(".", 1)[0], size=int(size), gpus_per_pod=gpus_per_pod)


def wait_for_stop() -> int:
    """A worker pod's main process: sleep until SIGTERM/SIGINT, then exit 0. The ranks that
    mpirun starts here through ``kubectl exec`` are not our children; mpirun stops them."""
    stop = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, _frame: stop.append(signum))
    print("[tritonllm] worker pod ready; the leader's mpirun starts ranks here",
          file=sys.stderr, flush=True)
    while not stop:
        signal.pause()
    return 0
