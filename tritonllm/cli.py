"""The ``tritonllm`` command: one subcommand per user task.

Each area adds its own subcommands through ``register(subparsers)`` in
``tritonllm/<area>/cli.py`` (build: plan/quantize/build ..., client: generate/chat, loadtest,
deploy, bench, soak, tune); ``serve`` is ``tritonllm/deploy/serve_cli.py``, above the build
so that it can serve a profile. Heavy libraries are imported inside the handlers so
``tritonllm --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

AREAS = ("tritonllm.deploy.serve_cli", "tritonllm.build.cli", "tritonllm.client.cli",
         "tritonllm.loadtest.cli", "tritonllm.deploy.cli", "tritonllm.bench.cli",
         "tritonllm.soak.cli", "tritonllm.tune.cli")


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
    for module in AREAS:
        importlib.import_module(module).register(subparsers)
    return parser


if __name__ == "__main__":
    sys.exit(main())
