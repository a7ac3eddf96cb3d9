"""``tritonllm loadtest run | sweep | compare | report``: Locust load tests of the deployment.

- ``run``: one headless Locust run (progress on the terminal; Locust CSV/HTML, summary.json/.md,
  samples.jsonl and PNG plots in ``--out``); exit code 3 when ``--slo`` is missed.
- ``sweep``: several runs at increasing ``--concurrency`` or ``--rates``; a table and a
  throughput-vs-latency plot.
- ``compare``: two summaries side by side; ``--max-regression`` makes it a gate (exit 4).
- ``report``: rebuild a report from a run's samples.jsonl (e.g. under another SLO).
"""

from __future__ import annotations

from tritonllm.defaults import GRPC_PORT, HTTP_PORT
import argparse
import sys
from datetime import datetime
from pathlib import Path

REGRESSION_EXIT_CODE = 4


def register(subparsers) -> None:
    parser = subparsers.add_parser("loadtest", help="Locust load tests with exact LLM metrics",
                                   description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(metavar="ACTION")
    run = sub.add_parser("run", help="one headless load test")
    _add_run_arguments(run)
    run.set_defaults(handler=_run)
    sweep = sub.add_parser("sweep", help="runs at several concurrencies or request rates")
    _add_run_arguments(sweep)
    group = sweep.add_mutually_exclusive_group(required=True)
    group.add_argument("--concurrency", help="closed-loop user counts, e.g. 1,2,4,8")
    group.add_argument("--rates", help="open-loop request rates (req/s), e.g. 0.5,1,2")
    sweep.set_defaults(handler=_sweep)
    _register_compare(sub)
    _register_report(sub)
    parser.set_defaults(handler=lambda args: parser.print_help() or 2)


def _add_run_arguments(p: argparse.ArgumentParser) -> None:
    from tritonllm.loadtest.runner import SHAPES, USERS, LocustRun

    d = LocustRun(out_dir="")
    p.add_argument("--user", choices=list(USERS), default=d.user,
                   help="http (generate), http-stream (SSE), grpc (ensemble stream), engine "
                        "(tensorrt_llm with token ids); default %(default)s")
    p.add_argument("--host", default=d.host,
                   help=f"http://127.0.0.1:{HTTP_PORT} for HTTP users, 127.0.0.1:{GRPC_PORT} "
                        "for gRPC users")
    p.add_argument("-u", "--users", type=int, default=d.users, help="concurrent users")
    p.add_argument("-r", "--spawn-rate", type=float, default=d.spawn_rate,
                   help="users started per second (default: all at once)")
    p.add_argument("-t", "--run-time", default=d.run_time, help="e.g. 60s, 5m")
    p.add_argument("--workload", default=d.workload,
                   help="IN/OUT tokens, a workload .yaml, a prompts .jsonl, or key=value fields")
    p.add_argument("--request-rate", type=float, default=d.request_rate,
                   help="open loop: Poisson arrivals, requests/s in total (0: closed loop)")
    p.add_argument("--slo", default=d.slo, help="e.g. ttft=500ms,tpot=50ms[,attainment=90%%]")
    p.add_argument("--processes", type=int, default=d.processes,
                   help="Locust worker processes on this machine (0: a single process)")
    p.add_argument("--shape", choices=SHAPES, default=None,
                   help="a load shape instead of -u/-t (parameters: --shape-params)")
    p.add_argument("--shape-params", default=d.shape_params, help="e.g. users=8,ramp=60s,hold=60s")
    p.add_argument("--stop-timeout", type=float, default=d.stop_timeout,
                   help="seconds in-flight requests get to finish at the end (default %(default)s)")
    p.add_argument("--model", default=d.model, help="Triton model name (default per user)")
    p.add_argument("--model-dir", default=d.model_dir, help="the served model's tokenizer dir")
    p.add_argument("--label", default=d.label, help="the run's name in reports")
    p.add_argument("--locustfile", default=d.locustfile, help="your own locustfile instead")
    p.add_argument("--out", default="", help="output directory (default out/loadtest/<time>)")
    p.add_argument("extra_args", nargs="*", help="after --: more Locust arguments")


def _locust_run(args):
    from tritonllm.loadtest.runner import LocustRun

    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return LocustRun(
        out_dir=args.out or f"out/loadtest/{args.user}-{stamp}", user=args.user, host=args.host,
        users=args.users, spawn_rate=args.spawn_rate, run_time=args.run_time,
        workload=args.workload, request_rate=args.request_rate, slo=args.slo,
        processes=args.processes, shape=args.shape or "", shape_params=args.shape_params,
        stop_timeout=args.stop_timeout, label=args.label, model=args.model,
        model_dir=args.model_dir, locustfile=args.locustfile, extra_args=tuple(args.extra_args))


def _run(args) -> int:
    from tritonllm.loadtest.runner import execute

    run = _locust_run(args)
    code = execute(run)
    print(f"[tritonllm] report in {run.out_dir} (exit code {code})", file=sys.stderr)
    return code


def _sweep(args) -> int:
    from tritonllm.loadtest.sweep import parse_values, run_sweep

    base = _locust_run(args)
    concurrency = parse_values(args.concurrency, "concurrency", int) if args.concurrency else None
    rates = parse_values(args.rates, "rates") if args.rates else None
    points = run_sweep(base, concurrency, rates)
    print((Path(base.out_dir) / "sweep.md").read_text())
    print(f"[tritonllm] sweep in {base.out_dir}", file=sys.stderr)
    return 0 if points else 1


def _register_compare(sub) -> None:
    p = sub.add_parser("compare", help="two run summaries side by side")
    p.add_argument("a", help="summary.json (or its run directory): the baseline")
    p.add_argument("b", help="summary.json (or its run directory): the candidate")
    p.add_argument("--max-regression", default=None,
                   help="e.g. 10%%: exit 4 when B is worse than A by more on any row")
    p.add_argument("--out", default="", help="also write the table to this Markdown file")
    p.set_defaults(handler=_compare)


def _compare(args) -> int:
    from tritonllm.loadtest.compare import markdown, regressions
    from tritonllm.loadtest.report import load_summary
    from tritonllm.loadtest.slo import parse_fraction

    a, b = load_summary(Path(args.a)), load_summary(Path(args.b))
    allowed = parse_fraction(args.max_regression, "max_regression") if args.max_regression else None
    table = markdown(a, b, allowed)
    print(table)
    if args.out:
        Path(args.out).write_text(table)
    worse = regressions(a, b, allowed) if allowed is not None else []
    if worse:
        print(f"[tritonllm] regressed beyond {allowed:.0%}: {', '.join(worse)}", file=sys.stderr)
        return REGRESSION_EXIT_CODE
    return 0


def _register_report(sub) -> None:
    p = sub.add_parser("report", help="rebuild a report from samples.jsonl")
    p.add_argument("samples", help="samples.jsonl (or its run directory)")
    p.add_argument("--slo", default="", help="evaluate this SLO")
    p.add_argument("--out", default="", help="output directory (default: beside the samples)")
    p.set_defaults(handler=_report)


def _report(args) -> int:
    from tritonllm.loadtest.report import load_summary, read_samples, write_report
    from tritonllm.loadtest.slo import SLO_FAILED_EXIT_CODE, Slo

    samples = Path(args.samples)
    samples = samples / "samples.jsonl" if samples.is_dir() else samples
    if not samples.is_file():
        raise FileNotFoundError(f"samples: no samples.jsonl at {samples}")
    out = Path(args.out) if args.out else samples.parent
    try:
        run = load_summary(samples.parent)["run"]
    except FileNotFoundError:
        run = {"label": samples.parent.name}
    slo = Slo.parse(args.slo) if args.slo else None
    doc = write_report(read_samples(samples), run, out, slo)
    print((out / "summary.md").read_text())
    return SLO_FAILED_EXIT_CODE if doc["slo"] and not doc["slo"]["passed"] else 0
