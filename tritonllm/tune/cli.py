"""``tritonllm tune``: the settings with the most goodput under an SLO, measured by load tests.

A cpu-target profile is measured on the CPU twin (:mod:`tritonllm.tune.measure`); a GPU profile
on the GPU node this runs on (:mod:`tritonllm.tune.gpu`).

Progress goes to the terminal a line per probe; everything lands in ``--out`` (see
:mod:`tritonllm.tune.report`), the journal too, so running the same command again after an
interruption resumes the search. Exit status 0 with a winning profile written; 3 when no
candidate met the SLO at any rate tried (no profile); 2 for bad input.
"""

from __future__ import annotations

import sys
from pathlib import Path

DEFAULT_PROFILE = Path(__file__).resolve().parents[2] / "build" / "smollm2-cpu.yaml"


def register(subparsers) -> None:
    from tritonllm.tune.rate_search import RateSearch

    d = RateSearch()
    p = subparsers.add_parser("tune", help="find the deployment settings with the most goodput "
                              "under a latency SLO, by load-testing them",
                              description=__doc__.splitlines()[0])
    p.add_argument("profile", type=Path, nargs="?", default=DEFAULT_PROFILE,
                   help="the base build profile (default: build/smollm2-cpu.yaml)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a base profile value, e.g. --set limits.max_seq_len=2048")
    p.add_argument("--workload", required=True,
                   help="the load test's --workload: IN/OUT, a workload .yaml (e.g. "
                        "loadtest/workloads/mixed.yaml) or key=value fields")
    p.add_argument("--slo", required=True,
                   help="per-request limits, e.g. ttft=1s,itl=250ms,attainment=90%%")
    p.add_argument("--budget", default="20m", help="time for the whole run (default %(default)s)")
    p.add_argument("--include-rebuild", action="store_true",
                   help="also vary the settings that need a new engine (quantization, limits)")
    p.add_argument("--space", default="",
                   help="your own space instead: section.key=v1|v2,... (values in YAML)")
    p.add_argument("--probe-time", default="15s", help="load per probe (default %(default)s)")
    p.add_argument("--start-rate", type=float, default=d.start,
                   help="req/s of the base profile's first probe (default %(default)s)")
    p.add_argument("--top", type=int, default=3, help="finalists re-measured (default 3)")
    p.add_argument("--repeats", type=int, default=1,
                   help="extra runs of each finalist and of the base (default 1)")
    p.add_argument("--num-threads", type=int, default=0,
                   help="engine threads of every candidate (default 0: automatic)")
    p.add_argument("--processes", type=int, default=None,
                   help="Locust processes per probe (default: one on the CPU twin; on a GPU "
                        "node half its cores, at most 8)")
    p.add_argument("--url", default="",
                   help="measure a deployment already running at HOST:PORT (Triton's HTTP "
                        "endpoint) as it runs, varying nothing; PROFILE names its tokenizer")
    p.add_argument("--out", type=Path, default=Path("out/tune"),
                   help="output directory and journal (default %(default)s)")
    p.add_argument("--fresh", action="store_true", help="discard the journal in --out")
    p.set_defaults(handler=_tune)


def _tune(args) -> int:
    from tritonllm.build.planning.gpus import get_device
    from tritonllm.build.profile import load_profile, profile_hash
    from tritonllm.loadtest.slo import SLO_FAILED_EXIT_CODE, Slo, parse_duration
    from tritonllm.loadtest.workloads import parse_spec
    from tritonllm.tune.journal import Journal
    from tritonllm.tune.rate_search import RateSearch
    from tritonllm.tune.report import write_report
    from tritonllm.tune.search import Tuner
    from tritonllm.tune.space import default_space, parse_space

    base = load_profile(args.profile, args.overrides)
    gpu = not get_device(base.target.gpu).is_cpu
    if (gpu or args.url) and args.num_threads:
        raise ValueError("num_threads: sets the threads of a CPU engine tune starts; a GPU "
                         "profile has none, and a running deployment keeps its own")
    slo = Slo.parse(args.slo)
    parse_spec(args.workload)
    budget_s = parse_duration(args.budget, "budget")
    probe_s = parse_duration(args.probe_time, "probe_time")
    if args.top < 1 or args.repeats < 0:
        raise ValueError(f"top: must be >= 1 and repeats >= 0, got {args.top}, {args.repeats}")
    if args.url and (args.space or args.include_rebuild):
        raise ValueError("url: a running deployment is measured as it runs; --space and "
                         "--include-rebuild vary settings, which needs servers tune starts")
    space = ([] if args.url else parse_space(args.space) if args.space
             else default_space(args.include_rebuild, gpu=gpu))
    settings = {"profile": profile_hash(base), "workload": args.workload, "slo": slo.describe(),
                "probe_s": probe_s, "num_threads": args.num_threads,
                "space": {d.key: list(d.values) for d in space}, "start_rate": args.start_rate}
    measurer = _measurer(args, base, slo, probe_s, gpu)
    if measurer.processes:  # the load generator's shape changes what a probe measures
        settings["processes"] = measurer.processes
    if args.url:
        settings["url"] = args.url
    journal_path = args.out / "journal.jsonl"
    if args.fresh:
        journal_path.unlink(missing_ok=True)
    journal = Journal(journal_path, settings)
    if journal.resumed_probes:
        print(f"[tune] resuming: {journal.resumed_probes} probes in {journal_path}")
    header = (f"Workload {args.workload}; SLO {slo.describe()}; {probe_s:g} s per probe; " +
              (f"the deployment at {args.url}" if args.url else f"base profile {base.source}"))
    print(f"[tune] {header}; budget {budget_s:g} s; keys: {', '.join(d.key for d in space)}",
          flush=True)
    tuner = Tuner(base, space, measurer, journal, budget_s=budget_s,
                  rates=RateSearch(start=args.start_rate), top=args.top, repeats=args.repeats,
                  log=lambda line: print(line, flush=True))
    try:
        result = tuner.run()
    finally:
        measurer.stop()
    path = write_report(result, base, args.out, list(slo.limits), header, settings,
                        running=bool(args.url))
    print((args.out / "tune.md").read_text())
    if not result.winner.goodput:
        return SLO_FAILED_EXIT_CODE
    if path is None:  # a running deployment: nothing was varied, no profile to write
        return 0
    print(f"[tune] {result.used_s:.0f} s measured; winning profile: {path}", file=sys.stderr)
    if gpu:
        link = measurer.link_engine(load_profile(path))
        if link is not None:
            print(f"[tune] its engine: {link} -> {link.resolve()}", file=sys.stderr)
        print(f"[tune] deploy it: tritonllm deploy entrypoint --profile {path}",
              file=sys.stderr)
    else:
        print(f"[tune] serve it: tritonllm serve --profile {path}", file=sys.stderr)
    return 0


def _measurer(args, base, slo, probe_s: float, gpu: bool):
    """A running deployment's measurer for ``--url``; else the CPU twin's for a cpu-target
    profile, and on a GPU node the GPU one."""
    if args.url:
        from tritonllm.tune.measure import RunningMeasurer

        return RunningMeasurer(args.out, args.workload, slo, probe_s, args.url,
                               processes=args.processes or 0)
    if not gpu:
        from tritonllm.tune.measure import CpuTwinMeasurer

        return CpuTwinMeasurer(args.out, args.workload, slo, probe_s,
                               num_threads=args.num_threads, processes=args.processes or 0)
    from tritonllm.deploy.node import detect
    from tritonllm.tune.gpu import GpuMeasurer

    return GpuMeasurer(args.out, args.workload, slo, probe_s, base=base, facts=detect(),
                       processes=args.processes)

