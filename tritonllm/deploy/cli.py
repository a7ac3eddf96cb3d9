"""``tritonllm deploy``: the container entrypoint, the worker-pod process, Kubernetes manifests.

    tritonllm deploy entrypoint [--profile P] [--dry-run]   what the images run
    tritonllm deploy worker                                 a LeaderWorkerSet worker pod
    tritonllm deploy k8s [--check]                          render (or check) deploy/k8s/
    tritonllm deploy gpu-check [--mode M]                   the GPU acceptance run
"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers) -> None:
    from tritonllm.deploy.entrypoint import EntrypointOptions
    from tritonllm.serve.launcher import DEFAULT_PORTS

    deploy = subparsers.add_parser("deploy", help="containers and Kubernetes: entrypoint, "
                                                  "worker, k8s manifests")
    deploy.set_defaults(handler=lambda _args: deploy.print_help() or 2)
    sub = deploy.add_subparsers(metavar="ACTION")
    defaults = EntrypointOptions()

    p = sub.add_parser("entrypoint", help="serve a build profile: CPU twin, or GPU engines "
                                          "(built once, cached) with tp x pp ranks")
    p.add_argument("--profile", default=None,
                   help="build profile YAML (default: $TRITONLLM_PROFILE; none: the CPU twin)")
    for name, port in DEFAULT_PORTS.items():
        p.add_argument(f"--{name}-port", type=int, default=port)
    p.add_argument("--exit-timeout-s", type=int, default=defaults.exit_timeout_s,
                   help="seconds tritonserver waits for in-flight requests on SIGTERM "
                        "(default %(default)s)")
    p.add_argument("--gpus-per-pod", type=int, default=defaults.gpus_per_pod,
                   help="multi-node (LeaderWorkerSet) only: GPUs in each pod of the group")
    p.add_argument("--hf-repo", default=None,
                   help="Hugging Face repo id to download when model.dir is missing "
                        "(default: $TRITONLLM_HF_REPO)")
    p.add_argument("--worker-wait-s", type=int, default=defaults.worker_wait_s)
    p.add_argument("--repo-dir", type=Path, default=None,
                   help="CPU twin only: where to render the model repository")
    p.add_argument("--log-file", type=Path, default=None)
    p.add_argument("--dry-run", action="store_true",
                   help="print the decisions and command lines; start nothing")
    p.set_defaults(handler=_entrypoint)

    w = sub.add_parser("worker", help="a LeaderWorkerSet worker pod: wait for the leader's "
                                      "mpirun to start ranks here")
    w.set_defaults(handler=lambda _args: _worker())

    k = sub.add_parser("k8s", help="render the example manifests into deploy/k8s/")
    k.add_argument("--out", type=Path, default=None, help="default: deploy/k8s of this checkout")
    k.add_argument("--check", action="store_true",
                   help="validate offline and compare with the files on disk; write nothing")
    k.set_defaults(handler=_k8s)

    g = sub.add_parser("gpu-check", help="on a GPU node: build SmolLM2 engines, serve them and "
                                         "run the live checks against them")
    g.add_argument("--mode", action="append", choices=("fp16", "fp8"), default=None,
                   help="repeatable (default: fp16, and fp8 where the GPU has it)")
    g.add_argument("--work-dir", type=Path, default=Path("out/gpu-check"))
    g.set_defaults(handler=_gpu_check)


def _entrypoint(args: argparse.Namespace) -> int:
    from tritonllm.deploy.entrypoint import DeployError, EntrypointOptions, run
    from tritonllm.serve.launcher import Ports

    options = EntrypointOptions(
        profile=args.profile, ports=Ports(args.http_port, args.grpc_port, args.metrics_port),
        exit_timeout_s=args.exit_timeout_s, gpus_per_pod=args.gpus_per_pod,
        hf_repo=args.hf_repo, worker_wait_s=args.worker_wait_s, repo_dir=args.repo_dir,
        log_file=args.log_file, dry_run=args.dry_run)
    try:
        return run(options)
    except DeployError as exc:
        raise ValueError(str(exc)) from None  # printed as "tritonllm: error: ..." (status 2)


def _gpu_check(args: argparse.Namespace) -> int:
    from tritonllm.deploy.gpu_check import run

    return run(args.work_dir, tuple(args.mode) if args.mode else None)


def _worker() -> int:
    from tritonllm.deploy.multinode import wait_for_stop

    return wait_for_stop()


def _k8s(args: argparse.Namespace) -> int:
    from tritonllm.deploy import manifests
    from tritonllm.deploy.validate import validate

    out = args.out or manifests.REPO_ROOT / manifests.K8S_DIR
    files = manifests.render_all()
    try:
        for text in files.values():
            for doc in manifests.documents(text):
                validate(doc)
    except ImportError as exc:
        raise ValueError(f"deploy k8s validates offline with kubernetes-validate ({exc}); "
                         "install the dev extras: pip install -e '.[dev]'") from None
    if args.check:
        problems = manifests.differences(out, files)
        print("\n".join(problems) or f"{len(files)} files in {out} match a fresh render")
        return 1 if problems else 0
    for path in manifests.write_all(out, files):
        print(path)
    return 0
