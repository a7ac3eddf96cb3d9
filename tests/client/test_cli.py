"""``tritonllm generate`` / ``tritonllm chat``: arguments and defaults, without a server (the
live runs are in test_live)."""

import argparse
import socket
import subprocess
import sys

from tritonllm.client import GenerationOptions
from tritonllm.client.cli import _options, register


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    return parser.parse_args(argv)


def test_generate_defaults_come_from_the_dataclasses():
    args = _parse("generate", "hello")
    assert args.prompt == "hello" and not args.stream and not args.grpc and args.url is None
    assert args.model == "ensemble"
    assert _options(args) == {"max_tokens": GenerationOptions().max_tokens, "temperature": None,
                              "top_k": None, "top_p": None, "seed": None, "stop": ()}


def test_generate_options_reach_the_client_options():
    args = _parse("generate", "hi", "--stream", "--grpc", "--url", "h:1", "--max-tokens", "5",
                  "--temperature", "0.5", "--top-k", "4", "--top-p", "0.9", "--seed", "7",
                  "--stop", "\n", "--stop", "END")
    assert args.stream and args.grpc and args.url == "h:1"
    options = GenerationOptions(**_options(args))
    assert (options.max_tokens, options.temperature, options.top_k, options.top_p,
            options.seed, options.stop) == (5, 0.5, 4, 0.9, 7, ("\n", "END"))


def test_chat_streams_by_default_and_takes_a_system_message():
    args = _parse("chat", "--system", "Be brief.")
    assert args.stream and args.system == "Be brief."
    assert not _parse("chat", "--no-stream").stream


def test_an_unreachable_server_is_reported_with_exit_status_1():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = subprocess.run(
        [sys.executable, "-m", "tritonllm.cli", "generate", "hi", "--url", f"127.0.0.1:{port}"],
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and not result.stdout
    assert result.stderr.startswith("tritonllm: error:")
