"""The ``tritonllm`` command: one subcommand per user task.

``serve`` lives here; each area adds its own subcommands through ``register(subparsers)`` in
``tritonllm/<area>/cli.py`` (build: plan/quantize/build ..., client: generate/chat, loadtest,
deploy). Heavy libraries are imported inside the handlers so ``tritonllm --help`` stays fast.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import sys
from pathlib import Path

AREAS = ("tritonllm.build.cli", "tritonllm.client.cli", "tritonllm.loadtest.cli",
         "tritonllm.deploy.cli", "tritonllm.bench.cli", "tritonllm.soak.cli")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "handler"):
        parser.print_help()
        return 2
    try:
        return int(args.handler(args) or 0)
    except (ValueError, FileNotFoundError) as exc:
        print(f"tritonllm: error: {exc}", file=sys.stderr)
        return 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tritonllm", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(metavar="COMMAND")
    register_serve(subparsers)
    for module in AREAS:
        importlib.import_module(module).register(subparsers)
    return parser


def register_serve(subparsers) -> None:
    from tritonllm.engine.config import EngineConfig
    from tritonllm.openai.settings import DEFAULT_PORT as DEFAULT_OPENAI_PORT
    from tritonllm.serve.launcher import DEFAULT_GRACE_PERIOD_S, DEFAULT_HOST, DEFAULT_PORTS
    from tritonllm.defaults import ABANDONED_STREAM_TIMEOUT_MS

    p = subparsers.add_parser("serve", help="serve a Llama model on CPU behind a real tritonserver")
    p.add_argument("--model", default=None,
                   help="a local Hugging Face Llama checkpoint dir (default: SmolLM2-135M-Instruct)")
    for name, port in DEFAULT_PORTS.items():
        p.add_argument(f"--{name}-port", type=int, default=port)
    p.add_argument("--openai-port", type=int, default=DEFAULT_OPENAI_PORT,
                   help=f"the OpenAI-compatible frontend's port (default {DEFAULT_OPENAI_PORT}; "
                        "0: no frontend)")
    p.add_argument("--host", default=DEFAULT_HOST,
                   help=f"address every port binds to (default {DEFAULT_HOST}; 0.0.0.0 exposes "
                        "the server: see SECURITY.md)")
    p.add_argument("--grace-period", type=int, default=DEFAULT_GRACE_PERIOD_S,
                   help="seconds in-flight requests get to finish on SIGTERM / Ctrl-C "
                        f"(Triton's --exit-timeout-secs; default {DEFAULT_GRACE_PERIOD_S})")
    p.add_argument("--repo-dir", type=Path, default=None,
                   help="where to render the model repository (default: the tritonllm cache)")
    p.add_argument("--log-file", type=Path, default=None, help="tritonserver's log (default: none)")
    p.add_argument("--triton-max-batch-size", type=int, default=64)
    p.add_argument("--decoupled", action=argparse.BooleanOptionalAction, default=True,
                   help="tensorrtllm_backend's decoupled_mode: --decoupled (default) streams "
                        "(gRPC stream, HTTP generate_stream) and refuses unary infer; "
                        "--no-decoupled serves unary infer/generate and refuses stream=true")
    p.add_argument("--preprocessing-instances", type=int, default=1)
    p.add_argument("--postprocessing-instances", type=int, default=1,
                   help="postprocessing is stateless per response: any count streams exact text")
    p.add_argument("--stream-interval", type=int, default=1,
                   help="tokens per streamed response after the first (TensorRT-LLM's "
                        "stream_interval; default 1: every token)")
    p.add_argument("--abandoned-stream-timeout-ms", type=int,
                   default=ABANDONED_STREAM_TIMEOUT_MS,
                   help="stop a streamed request whose responses the ensemble stopped "
                        "forwarding (its client left) after this long; 0: off (default "
                        f"{ABANDONED_STREAM_TIMEOUT_MS})")
    add_dataclass_options(p, EngineConfig, "engine")
    p.set_defaults(handler=_serve)


def add_dataclass_options(parser, cls, dest_prefix: str) -> None:
    """One ``--field-name`` option per init field of ``cls``; defaults read from the class."""
    defaults = cls()
    group = parser.add_argument_group(f"{cls.__name__} (defaults from the dataclass)")
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        default = getattr(defaults, f.name)
        kind = type(default)
        option = "--" + f.name.replace("_", "-")
        dest = f"{dest_prefix}__{f.name}"
        if kind is bool:
            group.add_argument(option, dest=dest, action=argparse.BooleanOptionalAction,
                               default=default)
        else:
            group.add_argument(option, dest=dest, type=kind, default=default,
                               help=f"default {default}")


def dataclass_from_args(cls, args, dest_prefix: str):
    prefix = f"{dest_prefix}__"
    return cls(**{k[len(prefix):]: v for k, v in vars(args).items() if k.startswith(prefix)})


def _serve(args) -> int:
    from tritonllm.engine.config import EngineConfig
    from tritonllm.serve.cpu import CpuDeployment, serve
    from tritonllm.serve.launcher import Ports

    deployment = CpuDeployment(model=args.model,
                               engine=dataclass_from_args(EngineConfig, args, "engine"),
                               triton_max_batch_size=args.triton_max_batch_size,
                               decoupled=args.decoupled,
                               preprocessing_instances=args.preprocessing_instances,
                               postprocessing_instances=args.postprocessing_instances,
                               stream_interval=args.stream_interval,
                               abandoned_stream_timeout_ms=args.abandoned_stream_timeout_ms)
    if args.repo_dir:
        deployment = dataclasses.replace(deployment, repo_dir=args.repo_dir)
    ports = Ports(args.http_port, args.grpc_port, args.metrics_port)
    return serve(deployment, ports, log_file=args.log_file, openai_port=args.openai_port,
                 host=args.host, grace_period_s=args.grace_period)


if __name__ == "__main__":
    sys.exit(main())
