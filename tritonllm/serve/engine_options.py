"""The CPU engine's options on a command line: one ``--field-name`` per :class:`EngineConfig`
field, shared by ``tritonllm serve`` and the engine benchmarks."""

from __future__ import annotations

import argparse
import dataclasses

ENGINE_PREFIX = "engine__"  # the destination prefix of these options in the parsed arguments


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
        dest = f"{ENGINE_PREFIX}{f.name}"
        if kind is bool:
            group.add_argument(option, dest=dest, action=argparse.BooleanOptionalAction,
                               default=default)
        else:
            group.add_argument(option, dest=dest, type=kind, default=default,
                               help=f"default {default}")


def engine_config(args):
    """The :class:`EngineConfig` that :func:`add_engine_options`' options describe."""
    from tritonllm.engine.config import EngineConfig

    return EngineConfig(**{k[len(ENGINE_PREFIX):]: v for k, v in vars(args).items()
                           if k.startswith(ENGINE_PREFIX)})
