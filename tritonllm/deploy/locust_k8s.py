"""An in-cluster Locust load test: one master Job, N worker Jobs' pods, and the master's Service.

The locustfiles are the project's own (``loadtest/``, see loadtest/README.md), run from the CPU
image (which installs Locust). The master waits for ``workers`` workers, runs headless for
``duration`` and writes its report (summary.json/.md, samples.jsonl, plots) to the cache
volume under ``loadtest/<target>/``. Workers need the served model's tokenizer: they mount the
same volume read-only. The target URL, the tokenizer path and the ports come from the target's
rendering, so they cannot drift from the server's.
"""

from __future__ import annotations

from dataclasses import dataclass

from tritonllm.defaults import DEFAULT_WORKLOAD
from tritonllm.deploy.k8s import CACHE_DIR, CACHE_PVC, PART_OF, UID, Rendered
from tritonllm.serve.launcher import DEFAULT_PORTS

MASTER_PORT = 5557  # Locust's default master port


@dataclass(frozen=True)
class LoadTestSpec:
    """``locustfile``: relative to the image's working directory (the project root)."""

    image: str = "tritonllm:0.1.0-cpu"
    locustfile: str = "loadtest/http_stream.py"
    workers: int = 4
    users: int = 64
    spawn_rate: float = 4.0
    duration: str = "10m"
    workload: str = DEFAULT_WORKLOAD
    slo: str = "ttft=2s,tpot=100ms"

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ValueError(f"workers: must be >= 1, got {self.workers}")
        if self.users < self.workers:
            raise ValueError(f"users: {self.users} must be >= workers ({self.workers})")
        if self.spawn_rate <= 0:
            raise ValueError(f"spawn_rate: must be > 0 users/s, got {self.spawn_rate}")


def locust_objects(spec: LoadTestSpec, target: Rendered) -> list[dict]:
    """The master Service, the master Job and the worker Job, aimed at ``target``'s Service."""
    master = f"{target.name}-locust-master"
    return [_master_service(master), _master_job(spec, target, master),
            _worker_job(spec, target, master)]


def _labels(component: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": "tritonllm-locust", "app.kubernetes.io/part-of": PART_OF,
            "app.kubernetes.io/component": component}


def _master_service(master: str) -> dict:
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": master, "labels": _labels("master")},
            "spec": {"selector": _labels("master"),
                     "ports": [{"name": "locust", "port": MASTER_PORT,
                                "targetPort": MASTER_PORT, "protocol": "TCP"}]}}


def master_args(spec: LoadTestSpec, target: Rendered) -> list[str]:
    host = f"http://{target.name}-api:{DEFAULT_PORTS['http']}"
    return ["-f", spec.locustfile, "--master", f"--master-bind-port={MASTER_PORT}",
            f"--expect-workers={spec.workers}", "--expect-workers-max-wait=600", "--headless",
            f"--users={spec.users}", f"--spawn-rate={spec.spawn_rate:g}",
            f"--run-time={spec.duration}", "--stop-timeout=300", f"--host={host}",
            f"--workload={spec.workload}", f"--slo={spec.slo}",
            f"--model-dir={_tokenizer_dir(target)}",
            f"--report-dir={CACHE_DIR}/loadtest/{target.name}"]


def _tokenizer_dir(target: Rendered) -> str:
    return target.profile.model.tokenizer_dir or target.profile.model.dir


def _master_job(spec: LoadTestSpec, target: Rendered, master: str) -> dict:
    container = _container(spec, target, master_args(spec, target), read_only=False)
    container["ports"] = [{"name": "locust", "containerPort": MASTER_PORT, "protocol": "TCP"}]
    return _job(master, _labels("master"), container, parallelism=1, backoff=0)


def _worker_job(spec: LoadTestSpec, target: Rendered, master: str) -> dict:
    args = ["-f", spec.locustfile, "--worker", f"--master-host={master}",
            f"--master-port={MASTER_PORT}"]
    container = _container(spec, target, args, read_only=True)
    # A worker that starts before the master is up exits and is retried.
    return _job(f"{target.name}-locust-worker", _labels("worker"), container,
                parallelism=spec.workers, backoff=6)


def _container(spec: LoadTestSpec, target: Rendered, args: list[str], read_only: bool) -> dict:
    mounts = [{"name": "cache", "mountPath": CACHE_DIR, "subPath": "tritonllm",
               "readOnly": read_only}]
    model_dir = target.profile.model_path()
    if model_dir is not None:
        mounts.append({"name": "cache", "mountPath": str(model_dir.parent), "subPath": "models",
                       "readOnly": True})
    return {"name": "locust", "image": spec.image, "imagePullPolicy": "IfNotPresent",
            "command": ["locust"], "args": args,
            "env": [{"name": "TRITONLLM_CACHE", "value": CACHE_DIR}],
            "resources": {"requests": {"cpu": "1", "memory": "2Gi"},
                          "limits": {"memory": "4Gi"}},
            "volumeMounts": mounts,
            "securityContext": {"allowPrivilegeEscalation": False,
                                "capabilities": {"drop": ["ALL"]}}}


def _job(name: str, labels: dict, container: dict, parallelism: int, backoff: int) -> dict:
    pod = {"metadata": {"labels": labels},
           "spec": {"restartPolicy": "Never", "enableServiceLinks": False,
                    "securityContext": {"runAsNonRoot": True, "runAsUser": UID,
                                        "runAsGroup": UID, "fsGroup": UID,
                                        "fsGroupChangePolicy": "OnRootMismatch",
                                        "seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [container],
                    "volumes": [{"name": "cache",
                                 "persistentVolumeClaim": {"claimName": CACHE_PVC}}]}}
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": name, "labels": labels},
            "spec": {"parallelism": parallelism, "completions": parallelism,
                     "backoffLimit": backoff, "ttlSecondsAfterFinished": 86400,
                     "template": pod}}
