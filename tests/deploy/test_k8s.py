"""Kubernetes manifests: the committed files equal a fresh render, every object passes the
Kubernetes schemas offline (and wrong ones do not), and every number comes from the profile or
from one place in code."""

from __future__ import annotations

import copy
import hashlib
import re
import subprocess
import sys

import pytest
import yaml

from tritonllm.build.profile import from_dict, load_profile
from tritonllm.deploy import k8s, manifests
from tritonllm.deploy.k8s import ClusterSpec
from tritonllm.deploy.launch import LaunchSpec
from tritonllm.deploy.validate import ManifestError, validate
from tritonllm.serve.launcher import DEFAULT_PORTS

FIX = "re-render with `tritonllm deploy k8s` and commit deploy/k8s/"


@pytest.fixture(scope="module")
def rendered():
    return manifests.render_all()


@pytest.fixture(scope="module")
def objects(rendered):
    """(relative path, object) for every rendered object."""
    return [(rel, doc) for rel, text in rendered.items() for doc in manifests.documents(text)]


def of_kind(objects, kind):
    return [(rel, doc) for rel, doc in objects if doc["kind"] == kind]


def test_committed_files_match_a_fresh_render(repo_root, rendered):
    problems = manifests.differences(repo_root / manifests.K8S_DIR, rendered)
    assert not problems, f"{problems}: {FIX}"


def test_check_command(repo_root):
    result = subprocess.run([sys.executable, "-m", "tritonllm.cli", "deploy", "k8s", "--check"],
                            capture_output=True, text=True, cwd=repo_root)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "match a fresh render" in result.stdout


def test_every_object_is_valid(objects):
    kinds = set()
    for _, doc in objects:
        validate(doc)
        kinds.add(doc["kind"])
    assert kinds == {"PersistentVolumeClaim", "ConfigMap", "Deployment", "Service",
                     "HorizontalPodAutoscaler", "LeaderWorkerSet", "ServiceAccount", "Role",
                     "RoleBinding", "Job"}


# --- the validator rejects what Kubernetes would reject ---------------------------------------

def edited(objects, kind, edit):
    doc = copy.deepcopy(of_kind(objects, kind)[0][1])
    edit(doc)
    return doc


@pytest.mark.parametrize("kind,edit,where", [
    ("Deployment", lambda d: d["spec"].update(replicas="one"), "spec.replicas"),
    ("Deployment", lambda d: d["spec"]["template"]["spec"]["containers"][0]["ports"][0]
     .update(containerPort="8000"), "containerPort"),
    ("Deployment", lambda d: d["spec"]["template"]["spec"]["containers"][0]
     .update(gpus=1), "containers.0"),
    ("Service", lambda d: d["spec"]["ports"][0].update(port=[8000]), "spec.ports.0.port"),
    ("HorizontalPodAutoscaler", lambda d: d["spec"].update(maxReplicas="4"), "maxReplicas"),
    ("LeaderWorkerSet", lambda d: d["spec"]["leaderWorkerTemplate"].update(size="2"),
     "leaderWorkerTemplate.size"),
    ("LeaderWorkerSet", lambda d: d["spec"].update(startupPolicy="Eventually"),
     "startupPolicy"),
    ("LeaderWorkerSet", lambda d: d["spec"]["leaderWorkerTemplate"].update(sizes=2),
     "leaderWorkerTemplate"),
    # the pod templates inside the custom resource are checked as real PodTemplateSpecs
    ("LeaderWorkerSet", lambda d: d["spec"]["leaderWorkerTemplate"]["workerTemplate"]["spec"]
     ["containers"][0]["resources"].update(limits="all"), "workerTemplate.spec.containers.0"),
])
def test_wrong_objects_are_rejected(objects, kind, edit, where):
    doc = edited(objects, kind, edit)
    with pytest.raises(ManifestError, match=where.replace(".", r"\.")):
        validate(doc)


def test_unknown_kind_is_rejected():
    with pytest.raises(ManifestError, match="no schema"):
        validate({"apiVersion": "example.com/v1", "kind": "Gadget", "metadata": {"name": "g"}})


# --- every number from one place --------------------------------------------------------------

def workload_pods(objects):
    """(profile dir, pod template, pods per group) for each serving workload."""
    for rel, doc in objects:
        if doc["kind"] == "Deployment":
            yield rel.parent, doc["spec"]["template"], 1
        elif doc["kind"] == "LeaderWorkerSet":
            lwt = doc["spec"]["leaderWorkerTemplate"]
            yield rel.parent, lwt["leaderTemplate"], lwt["size"]


def profile_of(objects, folder):
    cm = next(doc for rel, doc in of_kind(objects, "ConfigMap") if rel.parent == folder)
    return from_dict(yaml.safe_load(cm["data"]["profile.yaml"]))


def arg(container, name):
    return next(a.split("=", 1)[1] for a in container["args"] if a.startswith(f"--{name}="))


def test_gpus_are_tp_times_pp(objects):
    seen = 0
    for folder, template, pods in workload_pods(objects):
        profile = profile_of(objects, folder)
        container = template["spec"]["containers"][0]
        gpus = int(container["resources"]["limits"]["nvidia.com/gpu"])
        assert gpus * pods == profile.parallel.tp_size * profile.parallel.pp_size
        assert container["resources"]["requests"]["nvidia.com/gpu"] == str(gpus)
        seen += 1
    assert seen == len(manifests.EXAMPLES)


def test_ports_come_from_default_ports_and_the_profile(objects):
    for folder, template, _ in workload_pods(objects):
        container = template["spec"]["containers"][0]
        expected = {**DEFAULT_PORTS, "openai": profile_of(objects, folder).serving.openai_port}
        assert {p["name"]: p["containerPort"] for p in container["ports"]} == expected
        assert {n: int(arg(container, f"{n}-port")) for n in DEFAULT_PORTS} == DEFAULT_PORTS
        assert template["metadata"]["annotations"]["prometheus.io/port"] == \
            str(DEFAULT_PORTS["metrics"])
        svc = next(d for _, d in of_kind(objects, "Service")
                   if d["metadata"]["name"] == f"{k8s.k8s_name(folder.name)}-api")
        assert {p["name"]: p["port"] for p in svc["spec"]["ports"]} == expected


def test_openai_port_zero_drops_the_port_and_probes_triton(tmp_path, repo_root):
    text = (repo_root / "build" / "llama-3.1-8b-fp8-h100.yaml").read_text()
    (tmp_path / "p.yaml").write_text(text + "  openai_port: 0\n")  # serving is the last section
    r = k8s.resolve(ClusterSpec("p.yaml"), tmp_path)
    container = k8s.deployment(r)["spec"]["template"]["spec"]["containers"][0]
    assert [p["name"] for p in container["ports"]] == list(DEFAULT_PORTS)
    assert [p["name"] for p in k8s.service(r)["spec"]["ports"]] == list(DEFAULT_PORTS)
    for probe in ("startupProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/v2/health/ready", "port": "http"}


def test_profile_configmap_is_the_profile_file(repo_root, objects):
    for spec in manifests.EXAMPLES:
        profile = load_profile(repo_root / spec.profile_file)
        folder = next(f for f, _, _ in workload_pods(objects) if f.name == profile.name)
        cm = next(doc for rel, doc in of_kind(objects, "ConfigMap") if rel.parent == folder)
        assert cm["data"]["profile.yaml"] == (repo_root / spec.profile_file).read_text()
        template = next(t for f, t, _ in workload_pods(objects) if f == folder)
        digest = hashlib.sha256(cm["data"]["profile.yaml"].encode()).hexdigest()[:16]
        assert template["metadata"]["annotations"]["tritonllm.io/profile-sha256"] == digest


def test_probes_grace_and_drain(objects):
    for folder, template, _ in workload_pods(objects):
        profile = profile_of(objects, folder)
        container = template["spec"]["containers"][0]
        startup = container["startupProbe"]
        # The frontend's /health: 200 only when it runs, reaches Triton, and the ensemble is ready.
        assert startup["httpGet"] == container["readinessProbe"]["httpGet"] == \
            {"path": "/health", "port": "openai"}
        assert container["livenessProbe"]["httpGet"] == {"path": "/v2/health/live",
                                                         "port": "http"}
        spec = next(s for s in manifests.EXAMPLES if s.profile_file.endswith(f"{folder}.yaml"))
        assert startup["failureThreshold"] * startup["periodSeconds"] >= spec.startup_budget_s
        exit_timeout = int(arg(container, "exit-timeout-s"))
        drain = LaunchSpec("-", profile.parallel.tp_size, profile.parallel.pp_size,
                           exit_timeout_s=exit_timeout).stop_timeout_s
        assert template["spec"]["terminationGracePeriodSeconds"] >= drain + \
            container["lifecycle"]["preStop"]["sleep"]["seconds"]


def test_hpa_metric_is_published_by_the_adapter_rules(objects):
    cm = next(doc for rel, doc in of_kind(objects, "ConfigMap")
              if doc["metadata"]["name"] == "tritonllm-prometheus-adapter-rules")
    published = {r["name"]["as"] for r in yaml.safe_load(cm["data"]["config.yaml"])["rules"]}
    workloads = {doc["metadata"]["name"]: doc["kind"] for _, doc in objects
                 if doc["kind"] in ("Deployment", "LeaderWorkerSet")}
    for _, hpa in of_kind(objects, "HorizontalPodAutoscaler"):
        assert hpa["spec"]["metrics"][0]["pods"]["metric"]["name"] in published
        target = hpa["spec"]["scaleTargetRef"]
        assert workloads[target["name"]] == target["kind"]


def test_lws_service_selects_leaders_and_rbac_allows_exec(objects):
    lws = of_kind(objects, "LeaderWorkerSet")[0][1]
    name = lws["metadata"]["name"]
    svc = next(d for _, d in of_kind(objects, "Service") if d["metadata"]["name"] == f"{name}-api")
    assert svc["spec"]["selector"] == {"leaderworkerset.sigs.k8s.io/name": name,
                                       "leaderworkerset.sigs.k8s.io/worker-index": "0"}
    role = next(d for _, d in of_kind(objects, "Role") if d["metadata"]["name"] == name)
    assert {"resources": ["pods/exec"], "verbs": ["create"], "apiGroups": [""]} in role["rules"]
    worker = lws["spec"]["leaderWorkerTemplate"]["workerTemplate"]["spec"]
    assert worker["containers"][0]["command"] == ["tritonllm", "deploy", "worker"]
    assert "ports" not in worker["containers"][0]  # the OpenAI frontend runs on the leader only
    assert worker["serviceAccountName"] == name


def strings(node):
    if isinstance(node, dict):
        for value in node.values():
            yield from strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from strings(value)
    elif isinstance(node, str):
        yield node


def env_entries(node):
    if isinstance(node, dict):
        if isinstance(node.get("env"), list):
            yield from node["env"]
        for value in node.values():
            yield from env_entries(value)
    elif isinstance(node, list):
        for value in node:
            yield from env_entries(value)


def test_secrets_only_by_reference(objects):
    secretish = re.compile(r"TOKEN|SECRET|PASSWORD|API_KEY")
    checked = 0
    for rel, doc in objects:
        assert not any(re.search(r"hf_[A-Za-z0-9]{20,}", s) for s in strings(doc)), rel
        for entry in env_entries(doc):
            if secretish.search(entry["name"]):
                assert "value" not in entry and "secretKeyRef" in entry["valueFrom"], rel
                checked += 1
    assert checked >= len(manifests.EXAMPLES)  # HF_TOKEN, from the optional hf-token Secret


def test_locust_jobs_aim_at_the_first_example(objects):
    jobs = {d["metadata"]["name"]: d for _, d in of_kind(objects, "Job")}
    target = k8s.k8s_name(load_profile(manifests.REPO_ROOT /
                                       manifests.EXAMPLES[0].profile_file).name)
    master = jobs[f"{target}-locust-master"]["spec"]["template"]["spec"]["containers"][0]
    assert f"--host=http://{target}-api:{DEFAULT_PORTS['http']}" in master["args"]
    assert master["args"][:2] == ["-f", manifests.LOADTEST.locustfile]
    assert (manifests.REPO_ROOT / manifests.LOADTEST.locustfile).is_file()
    workers = jobs[f"{target}-locust-worker"]["spec"]
    assert workers["parallelism"] == workers["completions"] == manifests.LOADTEST.workers
    assert f"--expect-workers={manifests.LOADTEST.workers}" in master["args"]


# --- rendering follows the profile ------------------------------------------------------------

def test_a_changed_profile_changes_the_manifests(tmp_path, repo_root):
    text = (repo_root / "build" / "llama-3.1-8b-fp8-h100.yaml").read_text()
    (tmp_path / "p.yaml").write_text(text.replace("tp_size: 1", "tp_size: 2"))
    r = k8s.resolve(ClusterSpec("p.yaml"), tmp_path)
    limits = k8s.deployment(r)["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert limits["nvidia.com/gpu"] == "2"


def test_multinode_split_must_divide(tmp_path, repo_root):
    text = (repo_root / "build" / "llama-3.1-70b-fp8-tp4-h100.yaml").read_text()
    (tmp_path / "p.yaml").write_text(text)
    with pytest.raises(ValueError, match="gpus_per_pod: 3 does not divide"):
        k8s.resolve(ClusterSpec("p.yaml", gpus_per_pod=3), tmp_path)


@pytest.mark.parametrize("kwargs,field", [(dict(min_replicas=3, max_replicas=2), "max_replicas"),
                                          (dict(startup_budget_s=0), "startup_budget_s"),
                                          (dict(gpus_per_pod=-1), "gpus_per_pod")])
def test_bad_cluster_specs(kwargs, field):
    with pytest.raises(ValueError, match=field):
        ClusterSpec("x.yaml", **kwargs)


def test_names_are_dns_labels():
    assert k8s.k8s_name("llama-3.1-8b_FP8") == "tritonllm-llama-3-1-8b-fp8"
    with pytest.raises(ValueError, match="at most 52"):
        k8s.k8s_name("x" * 60)
