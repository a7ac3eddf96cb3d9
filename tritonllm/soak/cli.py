"""``tritonllm soak``: mixed traffic for minutes against a running server, nothing lost.

Every request is accounted for; afterwards the KV cache must be back to full and the server's
RSS growth within bound.

Exit status 0 when all checks pass, 1 when one fails (lost > 0, errors > 0, KV not back to
full, RSS growth over ``--max-rss-growth``). Results: ``soak.json``, ``soak.md`` and
``soak.png`` in ``--output-dir``; the table is also printed.
"""

from __future__ import annotations

from pathlib import Path

FAILED_EXIT_CODE = 1


def register(subparsers) -> None:
    from .runner import SoakConfig

    d = SoakConfig()
    p = subparsers.add_parser("soak", help="a long mixed-traffic run that must lose nothing",
                              description=__doc__.splitlines()[0])
    for name in ("http", "grpc", "openai", "metrics"):
        default = getattr(d, f"{name}_url")
        p.add_argument(f"--{name}-url", default=default, help=f"default {default}" + (
            '; "" skips the OpenAI kinds' if name == "openai" else ""))
    length = p.add_mutually_exclusive_group()
    length.add_argument("--minutes", type=float, default=None,
                        help=f"how long to send requests (default {d.duration_s / 60:g})")
    length.add_argument("--seconds", type=float, default=None)
    p.add_argument("--concurrency", type=int, default=d.concurrency,
                   help=f"worker threads, each one request at a time (default {d.concurrency}: "
                        "about 2x the 8-slot engine's saturation)")
    p.add_argument("--seed", type=int, default=d.seed, help="seeds each worker's request mix")
    p.add_argument("--window", type=float, default=d.window_s, dest="window_s",
                   help=f"seconds per latency window (default {d.window_s:g})")
    p.add_argument("--warmup", type=float, default=None, dest="warmup_s",
                   help="seconds before the RSS baseline (default: 10%% of the run, <= 60)")
    p.add_argument("--max-rss-growth", type=float, default=d.max_rss_growth,
                   help=f"fail above this RSS growth fraction (default {d.max_rss_growth})")
    p.add_argument("--server-pid", type=int, default=None,
                   help="tritonserver's PID (default: the process listening on the HTTP port)")
    p.add_argument("--neighbours", type=int, default=d.neighbours,
                   help="busy processes (one core each) beside the server for the whole run "
                        f"(default {d.neighbours})")
    p.add_argument("--output-dir", type=Path, default=d.output_dir)
    p.set_defaults(handler=_soak)


def _config(args):
    from .runner import SoakConfig

    duration = (args.seconds if args.seconds is not None
                else 60 * args.minutes if args.minutes is not None else SoakConfig.duration_s)
    return SoakConfig(http_url=args.http_url, grpc_url=args.grpc_url,
                      openai_url=args.openai_url or None, metrics_url=args.metrics_url,
                      duration_s=duration, concurrency=args.concurrency, seed=args.seed,
                      window_s=args.window_s, warmup_s=args.warmup_s,
                      max_rss_growth=args.max_rss_growth, server_pid=args.server_pid,
                      output_dir=args.output_dir, neighbours=args.neighbours)


def _soak(args) -> int:
    from .report import markdown, summarize, write
    from .runner import run_soak

    config = _config(args)
    print(f"soak: {config.duration_s:g} s at concurrency {config.concurrency} ...", flush=True)
    run = run_soak(config)
    summary = summarize(run)
    paths = write(summary, run, config.output_dir)
    print(markdown(summary))
    print("wrote " + ", ".join(map(str, paths)))
    return 0 if summary["passed"] else FAILED_EXIT_CODE
