"""The example manifests committed under deploy/k8s/, and the files they render to.

``tritonllm deploy k8s`` writes them; a test re-renders and compares byte for byte, so the
committed YAML can never drift from the profiles or the code. Layout::

    deploy/k8s/common/      the cache PVC, prometheus-adapter rules for the HPA metrics
    deploy/k8s/<profile>/   profile ConfigMap, Deployment or LeaderWorkerSet (+ RBAC), Service, HPA
    deploy/k8s/loadtest/    Locust master/worker Jobs aimed at the first example's Service
    deploy/k8s/schemas/     hand-written JSON schemas for custom resources (not rendered)
"""

from __future__ import annotations

from pathlib import Path

import yaml

from tritonllm.deploy import k8s
from tritonllm.deploy.k8s import ClusterSpec, Rendered
from tritonllm.deploy.locust_k8s import LoadTestSpec, locust_objects

REPO_ROOT = Path(__file__).resolve().parents[2]
K8S_DIR = Path("deploy/k8s")
NOT_RENDERED = ("schemas",)

EXAMPLES: tuple[ClusterSpec, ...] = (
    # One GPU: an 8B FP8 engine builds in minutes; an hour of start-up covers download + build.
    ClusterSpec("build/llama-3.1-8b-fp8-h100.yaml",
                hf_repo="meta-llama/Llama-3.1-8B-Instruct", startup_budget_s=3600),
    # One node, four GPUs: 70B FP8 calibration + four rank builds take far longer.
    ClusterSpec("build/llama-3.1-70b-fp8-tp4-h100.yaml",
                hf_repo="meta-llama/Llama-3.1-70B-Instruct", startup_budget_s=4 * 3600,
                memory_gib_per_gpu=96),
    # Two nodes of four GPUs: TP4 inside a node, PP2 across (a LeaderWorkerSet group of 2 pods).
    ClusterSpec("deploy/profiles/llama-3.1-70b-bf16-tp4pp2-a100.yaml", gpus_per_pod=4,
                hf_repo="meta-llama/Llama-3.1-70B-Instruct", startup_budget_s=4 * 3600,
                memory_gib_per_gpu=96),
)
LOADTEST = LoadTestSpec()


def header(source: str) -> str:
    return (f"# Rendered by `tritonllm deploy k8s` from {source}.\n"
            "# Do not edit: change the source (or tritonllm/deploy/) and re-render.\n")


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (an embedded profile, adapter rules) as readable ``|`` blocks; no
    YAML anchors/aliases for objects used twice (labels in metadata and selectors)."""

    def ignore_aliases(self, data) -> bool:
        return True


def _str(dumper: yaml.SafeDumper, text: str):
    style = "|" if "\n" in text else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


_Dumper.add_representer(str, _str)


def dump(objects: list[dict], source: str) -> str:
    docs = [yaml.dump(obj, Dumper=_Dumper, sort_keys=False, width=100) for obj in objects]
    return header(source) + "---\n".join(docs)


def profile_files(r: Rendered) -> dict[str, list[dict]]:
    """File name -> objects, for one profile."""
    files = {"profile.yaml": [k8s.profile_configmap(r)]}
    if r.multinode:
        files["rbac.yaml"] = k8s.exec_rbac(r)
        files["leaderworkerset.yaml"] = [k8s.leaderworkerset(r)]
    else:
        files["deployment.yaml"] = [k8s.deployment(r)]
    files["service.yaml"] = [k8s.service(r)]
    files["hpa.yaml"] = [k8s.hpa(r)]
    return files


def render_all(root: Path = REPO_ROOT, examples: tuple[ClusterSpec, ...] = EXAMPLES,
               loadtest: LoadTestSpec = LOADTEST) -> dict[Path, str]:
    """Relative path (under deploy/k8s) -> file text, for every rendered file."""
    code = "tritonllm/deploy/k8s.py"
    out = {Path("common/cache-pvc.yaml"): dump([k8s.cache_pvc()], code),
           Path("common/prometheus-adapter-rules.yaml"): dump([k8s.adapter_rules()], code)}
    rendered = [k8s.resolve(spec, root) for spec in examples]
    for r in rendered:
        for name, objects in profile_files(r).items():
            out[Path(r.profile.name) / name] = dump(objects, r.spec.profile_file)
    out[Path("loadtest/locust.yaml")] = dump(locust_objects(loadtest, rendered[0]),
                                             f"{rendered[0].spec.profile_file} + "
                                             "tritonllm/deploy/locust_k8s.py")
    return out


def write_all(out_dir: Path, files: dict[Path, str]) -> list[Path]:
    """Write ``files`` under ``out_dir`` and delete rendered files no longer produced."""
    for path in stale_files(out_dir, files):
        path.unlink()
    written = []
    for rel, text in files.items():
        path = out_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        written.append(path)
    return written


def stale_files(out_dir: Path, files: dict[Path, str]) -> list[Path]:
    """YAML files under ``out_dir`` that rendering would not produce (schemas excluded)."""
    if not out_dir.is_dir():
        return []
    found = [p for p in out_dir.rglob("*.yaml")
             if p.relative_to(out_dir).parts[0] not in NOT_RENDERED]
    return sorted(p for p in found if p.relative_to(out_dir) not in files)


def differences(out_dir: Path, files: dict[Path, str]) -> list[str]:
    """Human-readable reasons the committed files differ from a fresh render (empty: none)."""
    problems = [f"{out_dir / rel}: missing" for rel in files if not (out_dir / rel).is_file()]
    problems += [f"{out_dir / rel}: differs from a fresh render" for rel, text in files.items()
                 if (out_dir / rel).is_file() and (out_dir / rel).read_text() != text]
    problems += [f"{p}: no longer rendered" for p in stale_files(out_dir, files)]
    return problems


def documents(text: str) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(text) if doc]
