"""``tritonllm serve``: a Llama model on CPU behind a real tritonserver (the CPU twin), with
the OpenAI-compatible frontend beside it, from flags or from a cpu-target build profile
(``--profile``, the deployment the build's repository stage renders)."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from tritonllm.defaults import ABANDONED_STREAM_TIMEOUT_MS
from tritonllm.serve.engine_options import ENGINE_PREFIX, add_engine_options, engine_config


def register(subparsers) -> None:
    from tritonllm.openai.settings import DEFAULT_PORT as DEFAULT_OPENAI_PORT
    from tritonllm.serve.launcher import DEFAULT_GRACE_PERIOD_S, DEFAULT_HOST, DEFAULT_PORTS

    p = subparsers.add_parser("serve", help="serve a Llama model on CPU behind a real tritonserver")
    p.add_argument("--model", default=None,
                   help="a local Hugging Face Llama checkpoint dir (default: SmolLM2-135M-Instruct)")
    p.add_argument("--profile", type=Path, default=None,
                   help="a cpu-target build profile (e.g. the one `tritonllm tune` writes): the "
                        "model, engine and ensemble settings come from it, as `tritonllm build` "
                        "would render them; ports, host, logs and --num-threads still apply")
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


def _serve(args) -> int:
    from tritonllm.serve.cpu import serve
    from tritonllm.serve.launcher import Ports

    deployment = profile_deployment(args) if args.profile else _flag_deployment(args)
    if args.repo_dir:
        deployment = dataclasses.replace(deployment, repo_dir=args.repo_dir)
    ports = Ports(args.http_port, args.grpc_port, args.metrics_port)
    return serve(deployment, ports, log_file=args.log_file, openai_port=args.openai_port,
                 host=args.host, grace_period_s=args.grace_period)


# With --profile, these flags would contradict the profile; it has a key for each.
_PROFILE_DECIDES = ("model", "triton_max_batch_size", "decoupled", "preprocessing_instances",
                    "postprocessing_instances", "stream_interval")


def profile_deployment(args):
    """The deployment ``--profile`` describes (:func:`~tritonllm.build.repo_values.cpu_deployment`),
    with ``--num-threads`` and ``--abandoned-stream-timeout-ms``, which no profile key sets.
    Any other engine or ensemble flag away from its default is refused, naming the profile
    key to set instead, so a profile is never half-overridden by accident."""
    from tritonllm.build.profile import load_profile
    from tritonllm.build.repo_values import cpu_deployment

    defaults = _serve_defaults()
    changed = [name for name in _PROFILE_DECIDES if getattr(args, name) != defaults[name]]
    changed += [k[len(ENGINE_PREFIX):] for k, v in vars(args).items()
                if k.startswith(ENGINE_PREFIX) and k != f"{ENGINE_PREFIX}num_threads"
                and v != defaults[k]]
    if changed:
        raise ValueError(f"--profile: {', '.join('--' + c.replace('_', '-') for c in changed)} "
                         "would override the profile; set the profile's key instead "
                         "(`tritonllm plan --help` lists them)")
    deployment = cpu_deployment(load_profile(args.profile))
    engine = dataclasses.replace(deployment.engine, num_threads=engine_config(args).num_threads)
    return dataclasses.replace(deployment, engine=engine,
                               abandoned_stream_timeout_ms=args.abandoned_stream_timeout_ms)


def _serve_defaults() -> dict:
    """``serve``'s option defaults by destination name."""
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    return vars(parser.parse_args(["serve"]))


def _flag_deployment(args):
    from tritonllm.serve.cpu import CpuDeployment

    return CpuDeployment(model=args.model, engine=engine_config(args),
                         triton_max_batch_size=args.triton_max_batch_size,
                         decoupled=args.decoupled,
                         preprocessing_instances=args.preprocessing_instances,
                         postprocessing_instances=args.postprocessing_instances,
                         stream_interval=args.stream_interval,
                         abandoned_stream_timeout_ms=args.abandoned_stream_timeout_ms)
