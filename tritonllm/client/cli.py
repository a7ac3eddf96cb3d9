"""``tritonllm generate`` and ``tritonllm chat``: the client from the command line.

    tritonllm generate "The capital of France is" --max-tokens 16 [--stream] [--grpc]
    tritonllm chat --system "You are terse."        # interactive; or: echo "Hi" | tritonllm chat

Defaults come from :class:`GenerationOptions` and the client's settings (HTTP localhost:8000,
gRPC localhost:8001). The client library is imported inside the handlers.
"""

from __future__ import annotations

from tritonllm.client._client import DEFAULT_URLS
import argparse
import sys

# Defaults repeated nowhere: read from the dataclasses when the parser is built.
_SAMPLING_FLAGS = (  # (flag, GenerationOptions field, type, help)
    ("--max-tokens", "max_tokens", int, "new tokens at most"),
    ("--temperature", "temperature", float, "sampling temperature (default: greedy)"),
    ("--top-k", "top_k", int, "sample from the k most likely tokens"),
    ("--top-p", "top_p", float, "sample from the smallest set with this probability mass"),
    ("--seed", "seed", int, "sampling seed, for reproducible samples"),
)


def register(subparsers) -> None:
    generate = subparsers.add_parser("generate", help="complete a prompt on the server")
    generate.add_argument("prompt", help="the prompt text")
    generate.add_argument("--stream", action="store_true", help="print text as it is generated")
    _add_common(generate)
    generate.set_defaults(handler=_generate)

    chat = subparsers.add_parser(
        "chat", help="chat with the model (reads stdin, one message a line; /reset, /exit)")
    chat.add_argument("--system", default=None, help="a system message opening the chat")
    chat.add_argument("--no-stream", dest="stream", action="store_false",
                      help="print each reply when complete instead of streaming it")
    _add_common(chat)
    chat.set_defaults(handler=_chat)


def _add_common(parser: argparse.ArgumentParser) -> None:
    from ._client import ClientSettings
    from ._options import GenerationOptions

    settings, options = ClientSettings(), GenerationOptions()
    net = parser.add_argument_group("server")
    net.add_argument("--grpc", action="store_true", help="use gRPC instead of HTTP")
    net.add_argument("--url", default=None,
                     help=f"host:port (default: {DEFAULT_URLS['http']} for HTTP, "
                          f"{DEFAULT_URLS['grpc']} for gRPC)")
    net.add_argument("--model", default=settings.model, help=f"default {settings.model}")
    net.add_argument("--timeout", type=float, default=settings.timeout,
                     help=f"seconds a request may take (default {settings.timeout})")
    gen = parser.add_argument_group("generation")
    for flag, field, kind, text in _SAMPLING_FLAGS:
        default = getattr(options, field)
        gen.add_argument(flag, dest=field, type=kind, default=default,
                         help=text if default is None else f"{text} (default {default})")
    gen.add_argument("--stop", action="append", default=[], help="a stop string (repeatable)")
    parser.add_argument("--stats", action="store_true",
                        help="print token counts and timings to stderr")


def _client(args):
    from tritonllm.client import Client

    return Client(protocol="grpc" if args.grpc else "http", url=args.url, model=args.model,
                  timeout=args.timeout)


def _options(args) -> dict:
    options = {field: getattr(args, field) for _, field, _, _ in _SAMPLING_FLAGS}
    return {**options, "stop": tuple(args.stop)}


def _generate(args) -> int:
    from tritonllm.client import TritonLLMError

    try:
        with _client(args) as client:
            if args.stream:
                _print_stream(client.stream(args.prompt, **_options(args)), args.stats)
            else:
                _print_completion(client.generate(args.prompt, **_options(args)), args.stats)
    except TritonLLMError as exc:
        print(f"tritonllm: error: {exc}", file=sys.stderr)
        return 1
    return 0


def _print_stream(chunks, stats: bool) -> str:
    """Print deltas as they arrive; returns the whole text."""
    parts, first, last = [], None, None
    for chunk in chunks:
        print(chunk.text, end="", flush=True)
        parts.append(chunk.text)
        first = chunk.arrival_s if first is None else first
        last = chunk.arrival_s
    print(flush=True)
    if stats and first is not None:
        print(f"[{len(parts)} chunks, ttft {first:.3f} s, e2e {last:.3f} s]", file=sys.stderr)
    return "".join(parts)


def _print_completion(completion, stats: bool) -> str:
    print(completion.text, flush=True)
    if stats:
        print(f"[{completion.num_input_tokens} input tokens, {completion.num_output_tokens} "
              f"output tokens, e2e {completion.e2e_s:.3f} s]", file=sys.stderr)
    return completion.text


def _chat(args) -> int:
    """One user message per stdin line; the conversation history goes with every request.
    A failed turn is reported and dropped; the exit status is 1 if any turn failed."""
    from tritonllm.client import TritonLLMError

    interactive = sys.stdin.isatty()
    opening = [{"role": "system", "content": args.system}] if args.system else []
    history, failed = list(opening), False
    with _client(args) as client:
        for line in _user_lines(interactive):
            if line == "/reset":
                history = list(opening)
                continue
            turn = history + [{"role": "user", "content": line}]
            try:
                reply = _reply(client, turn, args)
            except TritonLLMError as exc:
                print(f"tritonllm: error: {exc}", file=sys.stderr)
                failed = True
                continue
            except KeyboardInterrupt:  # stops this reply (the request is cancelled), not the chat
                print("\n[interrupted]", file=sys.stderr)
                continue
            history = turn + [{"role": "assistant", "content": reply}]
    return 1 if failed else 0


def _reply(client, messages: list[dict], args) -> str:
    if args.stream:
        return _print_stream(client.chat_stream(messages, **_options(args)), args.stats)
    return _print_completion(client.chat(messages, **_options(args)), args.stats)


def _user_lines(interactive: bool):
    """Non-empty stdin lines until EOF, ``/exit`` or Ctrl-C; a prompt on stderr when a person
    is typing."""
    while True:
        if interactive:
            print("> ", end="", file=sys.stderr, flush=True)
        try:
            line = sys.stdin.readline()
        except KeyboardInterrupt:
            print(file=sys.stderr)
            return
        if not line or line.strip() in ("/exit", "/quit"):
            return
        if line.strip():
            yield line.rstrip("\n")
