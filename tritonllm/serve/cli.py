"""``tritonllm serve``: a Llama model on CPU behind a real tritonserver (the CPU twin), with
the OpenAI-compatible frontend beside it; and the engine options it shares with the engine
benchmarks."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from tritonllm.defaults import ABANDONED_STREAM_TIMEOUT_MS

_ENGINE_PREFIX = "engine__"


def register(subparsers) -> None:
    from tritonllm.openai.settings import DEFAULT_PORT as DEFAULT_OPENAI_PORT
    from tritonllm.serve.launcher import DEFAULT_GRACE_PERIOD_S, DEFAULT_HOST, DEFAULT_PORTS

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
    add_engine_options(p)
    p.set_defaults(handler=_serve)


def add_engine_options(parser) -> None:
    """One ``--field-name`` option per field of :class:`EngineConfig`, defaults read from it
    (``serve`` and the engine benchmarks take the same options)."""
    from tritonllm.engine.config import EngineConfig

    defaults = EngineConfig()
    group = parser.add_argument_group("EngineConfig (defaults from the dataclass)")
    for f in dataclasses.fields(EngineConfig):
        if not f.init:
            continue
        default = getattr(defaults, f.name)
        kind = type(default)
        option = "--" + f.name.replace("_", "-")
        dest = f"{_ENGINE_PREFIX}{f.name}"
        if kind is bool:
            group.add_argument(option, dest=dest, action=argparse.BooleanOptionalAction,
                               default=default)
        else:
            group.add_argument(option, dest=dest, type=kind, default=default,
                               help=f"default {default}")


def engine_config(args):
    """The :class:`EngineConfig` that :func:`add_engine_options`' options describe."""
    from tritonllm.engine.config import EngineConfig

    return EngineConfig(**{k[len(_ENGINE_PREFIX):]: v for k, v in vars(args).items()
                           if k.startswith(_ENGINE_PREFIX)})


def _serve(args) -> int:
    from tritonllm.serve.cpu import CpuDeployment, serve
    from tritonllm.serve.launcher import Ports

    deployment = CpuDeployment(model=args.model,
                               engine=engine_config(args),
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
