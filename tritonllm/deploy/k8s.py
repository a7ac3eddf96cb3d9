"""Kubernetes manifests rendered from a build profile: one source for every number in them.

GPU count (tp x pp, or per pod in a multi-node group), ports (``DEFAULT_PORTS``), the profile
itself (mounted from a ConfigMap, the file's hash on the pod template so an edit rolls the pods), the
shutdown grace period (``LaunchSpec.stop_timeout_s``) and the HPA's metric name all come from
code, never typed twice. Objects are plain dicts, dumped as YAML.

What a profile deploys as:

- one node (``gpus_per_pod == 0``): a Deployment requesting ``nvidia.com/gpu = tp x pp``;
- several nodes: a LeaderWorkerSet of ``tp x pp / gpus_per_pod`` pods per group, with a
  service account allowed to ``kubectl exec`` into the group's pods (mpirun's launcher);
- either way: a profile ConfigMap, a Service for HTTP/gRPC/metrics and the OpenAI frontend
  (``serving.openai_port``, port name ``openai``; absent when it is 0), and an HPA on the engine's
  queue (``nv_trt_llm_request_metrics{request_type="waiting"}``, served to the HPA as
  ``trtllm_requests_waiting`` by prometheus-adapter: see :func:`adapter_rules`).

The model and engine cache is one ReadWriteMany PVC shared by every pod (engine builds are
serialized by a file lock on it); probes give engine builds ``startup_budget_s`` to finish.

Readiness (and start-up) is the frontend's ``GET /health`` when it runs: it answers 200 only when
Triton and the ensemble are ready, so it adds to Triton's own check that the port clients of the
OpenAI API use is served and reaches Triton (a wrong wiring keeps the pod out of the Service).
Without a frontend it is Triton's ``/v2/health/ready``. Liveness stays Triton's
``/v2/health/live``: the entrypoint stops the server when the frontend dies, so the container
restarts either way.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from tritonllm.build.profile import BuildProfile, load_profile
from tritonllm.deploy.launch import LaunchSpec
from tritonllm.deploy.multinode import CONTAINER
from tritonllm.serve.launcher import DEFAULT_PORTS

PART_OF = "tritonllm"
CACHE_PVC = "tritonllm-cache"
CACHE_DIR = "/var/cache/tritonllm"
PROFILE_DIR = "/etc/tritonllm"
HPA_METRIC = "trtllm_requests_waiting"
CPU_HPA_METRIC = "tritonllm_num_requests_waiting"
UID = 1000  # the images' non-root user
PRESTOP_SLEEP_S = 10  # lets the Service drop the pod before the drain starts
READY_PATH, LIVE_PATH = "/v2/health/ready", "/v2/health/live"
OPENAI_PORT_NAME, OPENAI_READY_PATH = "openai", "/health"
LWS_API = "leaderworkerset.x-k8s.io/v1"


@dataclass(frozen=True)
class ClusterSpec:
    """How one profile runs in a cluster. ``profile_file``: the YAML, relative to the repository
    root. ``gpus_per_pod``: 0 puts all tp x pp GPUs in one pod; otherwise pods per group =
    tp x pp / gpus_per_pod. ``hf_repo``: downloaded into ``model.dir`` when it is missing."""

    profile_file: str
    image: str = "tritonllm:0.1.0-gpu"
    gpus_per_pod: int = 0
    hf_repo: str | None = None
    startup_budget_s: int = 3600
    exit_timeout_s: int = 60
    cpu_per_gpu: int = 8
    memory_gib_per_gpu: int = 64
    shm_gib: int = 16
    min_replicas: int = 1
    max_replicas: int = 4
    waiting_per_pod: int = 4

    def __post_init__(self) -> None:
        for name in ("startup_budget_s", "cpu_per_gpu", "memory_gib_per_gpu", "shm_gib",
                     "min_replicas", "waiting_per_pod"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: must be >= 1, got {getattr(self, name)}")
        if self.max_replicas < self.min_replicas:
            raise ValueError(f"max_replicas: {self.max_replicas} must be >= min_replicas "
                             f"({self.min_replicas})")
        if self.gpus_per_pod < 0:
            raise ValueError(f"gpus_per_pod: must be >= 0, got {self.gpus_per_pod}")


@dataclass(frozen=True)
class Rendered:
    """One profile's objects, resolved: the loaded profile and the numbers derived from it."""

    spec: ClusterSpec
    profile: BuildProfile
    profile_text: str

    @property
    def name(self) -> str:
        return k8s_name(self.profile.name)

    @property
    def world_size(self) -> int:
        return self.profile.parallel.world_size

    @property
    def multinode(self) -> bool:
        return 0 < self.spec.gpus_per_pod < self.world_size

    @property
    def gpus_per_pod(self) -> int:
        return self.spec.gpus_per_pod if self.multinode else self.world_size

    @property
    def group_size(self) -> int:
        return self.world_size // self.gpus_per_pod

    @property
    def launch(self) -> LaunchSpec:
        return LaunchSpec(model_repository="-", tp_size=self.profile.parallel.tp_size,
                          pp_size=self.profile.parallel.pp_size,
                          exit_timeout_s=self.spec.exit_timeout_s)

    @property
    def profile_sha256(self) -> str:
        return hashlib.sha256(self.profile_text.encode()).hexdigest()[:16]

    @property
    def ports(self) -> dict[str, int]:
        """The serving container's ports by name: Triton's three, then the frontend's."""
        ports = dict(DEFAULT_PORTS)
        if self.profile.serving.openai_port:
            ports[OPENAI_PORT_NAME] = self.profile.serving.openai_port
        return ports

    @property
    def readiness(self) -> tuple[str, str]:
        """(path, port name) of the readiness and start-up probes (see the module docstring)."""
        if self.profile.serving.openai_port:
            return OPENAI_READY_PATH, OPENAI_PORT_NAME
        return READY_PATH, "http"

    @property
    def labels(self) -> dict[str, str]:
        return {"app.kubernetes.io/name": self.name, "app.kubernetes.io/part-of": PART_OF}


def k8s_name(text: str) -> str:
    """A DNS-1035 label for ``text`` (Service and LeaderWorkerSet names): ValueError when too
    long to leave room for LeaderWorkerSet's pod suffixes."""
    name = "tritonllm-" + re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")
    if len(name) > 52:
        raise ValueError(f"name: {name!r} is {len(name)} characters; at most 52 leave room "
                         "for pod suffixes (shorten the profile name)")
    return name


def resolve(spec: ClusterSpec, root: Path) -> Rendered:
    path = root / spec.profile_file
    profile = load_profile(path)
    world = profile.parallel.world_size
    if spec.gpus_per_pod and world % spec.gpus_per_pod:
        raise ValueError(f"gpus_per_pod: {spec.gpus_per_pod} does not divide tp x pp = {world}")
    return Rendered(spec, profile, path.read_text())


# --- objects ----------------------------------------------------------------------------------

def profile_configmap(r: Rendered) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": f"{r.name}-profile", "labels": r.labels},
            "data": {"profile.yaml": r.profile_text}}


def deployment(r: Rendered) -> dict:
    template = _pod_template(r, _server_container(r, r.gpus_per_pod), service_account=None)
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": r.name, "labels": r.labels},
            "spec": {"replicas": r.spec.min_replicas,
                     "selector": {"matchLabels": r.labels},
                     "strategy": {"type": "RollingUpdate",
                                  "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
                     "template": template}}


def leaderworkerset(r: Rendered) -> dict:
    leader = _pod_template(r, _server_container(r, r.gpus_per_pod), service_account=r.name)
    worker = _pod_template(r, _worker_container(r), service_account=r.name, serves=False)
    return {"apiVersion": LWS_API, "kind": "LeaderWorkerSet",
            "metadata": {"name": r.name, "labels": r.labels},
            "spec": {"replicas": r.spec.min_replicas, "startupPolicy": "LeaderCreated",
                     "rolloutStrategy": {"type": "RollingUpdate",
                                         "rollingUpdateConfiguration": {"maxUnavailable": 1,
                                                                        "maxSurge": 0}},
                     "leaderWorkerTemplate": {"size": r.group_size,
                                              "restartPolicy": "RecreateGroupOnPodRestart",
                                              "leaderTemplate": leader,
                                              "workerTemplate": worker}}}


def exec_rbac(r: Rendered) -> list[dict]:
    """mpirun on the leader starts ranks in worker pods with ``kubectl exec``."""
    meta = {"name": r.name, "labels": r.labels}
    rules = [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]},
             {"apiGroups": [""], "resources": ["pods/exec"], "verbs": ["create"]}]
    return [{"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta},
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": meta,
             "rules": rules},
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
             "metadata": meta,
             "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                         "name": r.name},
             "subjects": [{"kind": "ServiceAccount", "name": r.name}]}]


def service(r: Rendered) -> dict:
    """Clients connect here; in a LeaderWorkerSet only leaders (worker index 0) serve."""
    selector = dict(r.labels)
    if r.multinode:
        selector = {"leaderworkerset.sigs.k8s.io/name": r.name,
                    "leaderworkerset.sigs.k8s.io/worker-index": "0"}
    ports = [{"name": name, "port": port, "targetPort": name, "protocol": "TCP"}
             for name, port in r.ports.items()]
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": f"{r.name}-api", "labels": r.labels},
            "spec": {"type": "ClusterIP", "selector": selector, "ports": ports}}


def hpa(r: Rendered) -> dict:
    """Scale on the engine's waiting requests per serving pod (a Pods custom metric)."""
    target = ({"apiVersion": LWS_API, "kind": "LeaderWorkerSet", "name": r.name} if r.multinode
              else {"apiVersion": "apps/v1", "kind": "Deployment", "name": r.name})
    metric = {"type": "Pods",
              "pods": {"metric": {"name": HPA_METRIC},
                       "target": {"type": "AverageValue",
                                  "averageValue": str(r.spec.waiting_per_pod)}}}
    # Engine loads take minutes: add one replica at a time, remove slowly.
    behavior = {"scaleUp": {"stabilizationWindowSeconds": 60,
                            "policies": [{"type": "Pods", "value": 1, "periodSeconds": 300}]},
                "scaleDown": {"stabilizationWindowSeconds": 900,
                              "policies": [{"type": "Pods", "value": 1, "periodSeconds": 600}]}}
    return {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": r.name, "labels": r.labels},
            "spec": {"scaleTargetRef": target, "minReplicas": r.spec.min_replicas,
                     "maxReplicas": r.spec.max_replicas, "metrics": [metric],
                     "behavior": behavior}}


def cache_pvc(size: str = "1Ti", storage_class: str | None = None) -> dict:
    """ReadWriteMany: every replica (and every pod of a group) reads the same engines."""
    spec = {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": size}}}
    if storage_class:
        spec["storageClassName"] = storage_class
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": CACHE_PVC, "labels": {"app.kubernetes.io/part-of": PART_OF}},
            "spec": spec}


def adapter_rules() -> dict:
    """prometheus-adapter rules that publish the HPA metrics (merge into its config)."""
    def rule(series: str, selector: str, name: str) -> dict:
        return {"seriesQuery": f'{series}{{{selector}namespace!="",pod!=""}}',
                "resources": {"overrides": {"namespace": {"resource": "namespace"},
                                            "pod": {"resource": "pod"}}},
                "name": {"matches": f"^{series}$", "as": name},
                "metricsQuery": f"sum({series}{{{selector}<<.LabelMatchers>>}}) "
                                "by (<<.GroupBy>>)"}

    rules = [rule("nv_trt_llm_request_metrics", 'request_type="waiting",', HPA_METRIC),
             rule(CPU_HPA_METRIC, "", CPU_HPA_METRIC)]
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "tritonllm-prometheus-adapter-rules",
                         "labels": {"app.kubernetes.io/part-of": PART_OF}},
            "data": {"config.yaml": yaml.safe_dump({"rules": rules}, sort_keys=False)}}


# --- pods -------------------------------------------------------------------------------------

def _pod_template(r: Rendered, container: dict, service_account: str | None,
                  serves: bool = True) -> dict:
    # The mounted file's hash: editing the profile rolls the pods (kubectl apply).
    annotations = {"tritonllm.io/profile-sha256": r.profile_sha256}
    if serves:  # worker pods of a group expose no metrics port
        annotations = {"prometheus.io/scrape": "true",
                       "prometheus.io/port": str(DEFAULT_PORTS["metrics"]),
                       "prometheus.io/path": "/metrics", **annotations}
    spec = {"securityContext": {"runAsNonRoot": True, "runAsUser": UID, "runAsGroup": UID,
                                "fsGroup": UID, "fsGroupChangePolicy": "OnRootMismatch",
                                "seccompProfile": {"type": "RuntimeDefault"}},
            "terminationGracePeriodSeconds": PRESTOP_SLEEP_S + r.launch.stop_timeout_s,
            "enableServiceLinks": False,
            "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists",
                             "effect": "NoSchedule"}],
            "containers": [container],
            "volumes": _volumes(r)}
    if service_account:
        spec["serviceAccountName"] = service_account
    return {"metadata": {"labels": r.labels, "annotations": annotations}, "spec": spec}


def _volumes(r: Rendered) -> list[dict]:
    return [{"name": "cache", "persistentVolumeClaim": {"claimName": CACHE_PVC}},
            {"name": "profile", "configMap": {"name": f"{r.name}-profile"}},
            {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": f"{r.spec.shm_gib}Gi"}}]


def _mounts(r: Rendered) -> list[dict]:
    mounts = [{"name": "cache", "mountPath": CACHE_DIR, "subPath": "tritonllm"},
              {"name": "profile", "mountPath": PROFILE_DIR, "readOnly": True},
              {"name": "shm", "mountPath": "/dev/shm"}]
    model_dir = r.profile.model_path()
    if model_dir is not None:  # checkpoints live on the same volume, under models/
        mounts.insert(1, {"name": "cache", "mountPath": str(model_dir.parent),
                          "subPath": "models"})
    return mounts


def _env(r: Rendered) -> list[dict]:
    env = [{"name": "TRITONLLM_PROFILE", "value": f"{PROFILE_DIR}/profile.yaml"},
           {"name": "TRITONLLM_CACHE", "value": CACHE_DIR},
           {"name": "HF_HOME", "value": f"{CACHE_DIR}/huggingface"},
           # The token never appears in a manifest: an optional Secret (see deploy/README.md).
           {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf-token",
                                                                "key": "token",
                                                                "optional": True}}}]
    if r.spec.hf_repo:
        env.insert(2, {"name": "TRITONLLM_HF_REPO", "value": r.spec.hf_repo})
    return env


def _resources(r: Rendered, gpus: int) -> dict:
    amounts = {"cpu": str(r.spec.cpu_per_gpu * gpus),
               "memory": f"{r.spec.memory_gib_per_gpu * gpus}Gi", "nvidia.com/gpu": str(gpus)}
    return {"requests": dict(amounts),
            "limits": {"memory": amounts["memory"], "nvidia.com/gpu": amounts["nvidia.com/gpu"]}}


def _container_base(r: Rendered, gpus: int) -> dict:
    return {"name": CONTAINER, "image": r.spec.image, "imagePullPolicy": "IfNotPresent",
            "env": _env(r), "resources": _resources(r, gpus), "volumeMounts": _mounts(r),
            "securityContext": {"allowPrivilegeEscalation": False,
                                "capabilities": {"drop": ["ALL"]}}}


def _server_container(r: Rendered, gpus: int) -> dict:
    args = [f"--{name}-port={port}" for name, port in DEFAULT_PORTS.items()]
    args.append(f"--exit-timeout-s={r.spec.exit_timeout_s}")
    if r.multinode:
        args.append(f"--gpus-per-pod={r.gpus_per_pod}")
    period = 30
    return {**_container_base(r, gpus),
            "command": ["tritonllm", "deploy", "entrypoint"], "args": args,
            "ports": [{"name": name, "containerPort": port, "protocol": "TCP"}
                      for name, port in r.ports.items()],
            # startup: the engine may be built first; liveness only counts after it passes.
            "startupProbe": _probe(*r.readiness, period, -(-r.spec.startup_budget_s // period)),
            "readinessProbe": _probe(*r.readiness, 10, 3),
            "livenessProbe": _probe(LIVE_PATH, "http", 15, 4),
            "lifecycle": {"preStop": {"sleep": {"seconds": PRESTOP_SLEEP_S}}}}


def _worker_container(r: Rendered) -> dict:
    return {**_container_base(r, r.gpus_per_pod), "command": ["tritonllm", "deploy", "worker"]}


def _probe(path: str, port: str, period_s: int, failures: int) -> dict:
    return {"httpGet": {"path": path, "port": port}, "periodSeconds": period_s,
            "timeoutSeconds": 5, "failureThreshold": failures}
