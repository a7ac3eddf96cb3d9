"""Build subcommands: ``plan``, ``compress``, ``quantize``, ``verify``, ``engine``, ``build``,
``accuracy``.

Each takes a profile (YAML, see ``tritonllm.build.profile``) and ``--set section.key=value``
overrides; every default shown in ``--help`` is read from the profile dataclasses. Exit
statuses: 0 done, 1 rejected plan / failed verification, 2 bad input, 3 engine commands printed
but not run (no TensorRT-LLM or no GPU here).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path


def register(subparsers) -> None:
    _plan_parser(subparsers)
    for stage, text in (("compress", "prune, distill and 2:4-sparsify the HF checkpoint as the "
                                     "profile's compression: section says (CPU; minutes)"),
                        ("quantize", "quantize with ModelOpt and export the TensorRT-LLM "
                                     "checkpoint (CPU is fine)"),
                        ("verify", "check the exported checkpoint against the profile, "
                                   "TensorRT-LLM 1.1.0's layout and the source weights"),
                        ("engine", "run trtllm-build, or print its exact command lines "
                                   "(exit 3) where TensorRT-LLM or a GPU is missing")):
        p = _profile_parser(subparsers, stage, text)
        p.add_argument("--force", action="store_true", help="run even if up to date")
        p.set_defaults(handler=_stage_handler(stage))
    p = _profile_parser(subparsers, "build", "plan -> compress -> quantize -> verify -> "
                        "engine -> repository; stages already up to date are skipped")
    p.add_argument("--force", action="store_true", help="re-run every stage")
    p.add_argument("--stages", default=",".join(_stages()),
                   help="comma-separated subset, in order (default: all)")
    p.set_defaults(handler=_build)
    _accuracy_parser(subparsers)


def _stages() -> tuple[str, ...]:
    from tritonllm.build.pipeline import STAGES

    return STAGES


def profile_defaults() -> str:
    """``section.key=default`` for every profile field: the dataclasses are the only source."""
    from tritonllm.build.profile import BuildProfile

    lines = []
    for f in dataclasses.fields(BuildProfile):
        if f.name in ("name", "source"):
            continue
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING \
            else f.default
        if dataclasses.is_dataclass(default):
            lines += [f"  {f.name}.{k}={v}" for k, v in dataclasses.asdict(default).items()]
        else:
            lines.append(f"  {f.name}={default}")
    return "profile keys and their defaults (override with --set KEY=VALUE):\n" + "\n".join(lines)


def _profile_parser(subparsers, name: str, text: str) -> argparse.ArgumentParser:
    p = subparsers.add_parser(name, help=text, description=text, epilog=profile_defaults(),
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("profile", type=Path, help="build profile YAML (see build/*.yaml)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a profile value, e.g. --set parallel.tp_size=2")
    p.add_argument("--output-dir", type=Path, default=None,
                   help="build directory (default: the profile's output_dir, else "
                        "<tritonllm cache>/builds/<name>)")
    return p


def _plan_parser(subparsers) -> None:
    p = _profile_parser(subparsers, "plan", "memory plan and rule checks for a profile, "
                        "before anything expensive")
    p.add_argument("--json", action="store_true", help="print the plan as JSON")
    p.add_argument("--slo", default=None, metavar="ttft=500ms,tpot=50ms",
                   help="also rank the shipped Llama sizes and precisions on this device by "
                        "fit and estimated latency against this SLO (tritonllm.build.planning.sizing)")
    p.set_defaults(handler=_plan)


def _load(args):
    from tritonllm.build.pipeline import Build
    from tritonllm.build.profile import load_profile

    return Build(load_profile(args.profile, args.overrides), args.output_dir)


def _plan(args) -> int:
    from tritonllm.build.planning.planner import format_plan

    from tritonllm.build.planning import sizing
    from tritonllm.build.planning.instances import plan_instances

    slo = sizing.SizingSlo.parse(args.slo) if args.slo is not None else None
    build = _load(args)
    plan = build.plan()
    report = plan.to_dict()
    if slo is not None:
        rows = sizing.rank(build.profile, slo)
        report["sizing"] = sizing.guidance_dict(build.profile, slo, rows)
    print(json.dumps(report, indent=2) if args.json else format_plan(plan))
    if not args.json:
        print(plan_instances(build.profile, plan).describe())
    if slo is not None and not args.json:
        print("\n" + sizing.format_guidance(build.profile, slo, rows))
    return 0 if plan.ok else 1


def _stage_handler(stage: str):
    def handler(args) -> int:
        result = _load(args).run(stage, force=args.force)
        print(f"[{stage}] {result.status}: {result.detail}")
        return result.exit_code

    return handler


def _build(args) -> int:
    from tritonllm.build.pipeline import STAGES, build

    stages = tuple(s.strip() for s in args.stages.split(",") if s.strip())
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        raise ValueError(f"--stages: unknown {unknown}; choose from {', '.join(STAGES)}")
    b = _load(args)
    code = build(b.profile, stages, force=args.force, root=b.root)
    if code == 3:
        print("[build] engines not built here: run the printed trtllm-build command on a GPU "
              "node, then `tritonllm build PROFILE` again (finished stages are skipped)")
    return code


def _accuracy_parser(subparsers) -> None:
    from tritonllm.build.profile import QuantSpec

    p = subparsers.add_parser(
        "accuracy", help="perplexity and greedy agreement of each quantization mode on CPU "
        "(ModelOpt simulated quantization); writes JSON and a Markdown table")
    p.add_argument("--model", default=None,
                   help="Hugging Face Llama dir (default: SmolLM2-135M-Instruct)")
    p.add_argument("--modes", default=None,
                   help="comma-separated modes (default: every mode this machine can simulate; "
                        "nvfp4 needs CUDA)")
    p.add_argument("--kv-cache", default="none", choices=("none", "int8", "fp8"))
    p.add_argument("--group-size", type=int, default=64,
                   help="AWQ group (SmolLM2 needs 64: 576 %% 128 != 0)")
    p.add_argument("--smoothquant-alpha", type=float, default=QuantSpec().smoothquant_alpha,
                   help="int8_sq migration strength (default from the profile dataclass; "
                        "SmolLM2 does best near 0.8)")
    p.add_argument("--new-tokens", type=int, default=32, help="greedy tokens per prompt")
    p.add_argument("--engine-weights", default="fp32,int8,int4",
                   help="the CPU engine's weight modes to measure too, comma-separated "
                        "(default fp32,int8,int4; '' for none)")
    p.add_argument("--output-dir", type=Path, default=Path("."),
                   help="where accuracy.json and accuracy.md go (default: .)")
    g = p.add_argument_group(
        "compression report", "with --students: compare compressed checkpoints with --model "
        "(the teacher) instead of quantization modes: perplexity, top-1 agreement, "
        "parameters, weight bytes and CPU twin tokens/s at c=1 and c=8, measured in one run; "
        "writes compression.json, compression.md and compression.png")
    g.add_argument("--students", default=None, metavar="LABEL=DIR[:MODE],...",
                   help="HF Llama dirs to compare (e.g. a build's compressed/model); :MODE "
                        "adds simulated quantization (int8_wo, fp8, ...)")
    g.add_argument("--requests", type=int, default=8,
                   help="requests of the mixed workload per speed run")
    g.add_argument("--rounds", type=int, default=2, help="interleaved speed rounds (median)")
    g.add_argument("--no-speed", action="store_true", help="quality only")
    g.add_argument("--speed-of", default=None, metavar="LABEL,...",
                   help="measure speed only for the teacher and these students' shapes "
                        "(default: every shape)")
    g.add_argument("--curve", default=None, metavar="LABEL=PATH",
                   help="a compress run's distill/curve.json: writes curve.json (points, "
                        "summary, extrapolation) and curve.png against this run's teacher")
    p.set_defaults(handler=_accuracy)


def _engine_weights(text: str) -> tuple[str, ...]:
    from tritonllm.engine.config import WEIGHT_MODES

    weights = tuple(w.strip() for w in text.split(",") if w.strip())
    unknown = [w for w in weights if w not in WEIGHT_MODES or w == "auto"]
    if unknown:
        raise ValueError(f"--engine-weights: {unknown} not among fp32, int8, int4")
    return weights


def _accuracy(args) -> int:
    from tritonllm.build.quantization.accuracy import simulable_modes, run_report
    from tritonllm.model_source import resolve_model_dir

    if args.students:
        return _compression_report(args, resolve_model_dir(args.model))
    modes = [m.strip() for m in args.modes.split(",") if m.strip()] if args.modes else simulable_modes()
    report = run_report(resolve_model_dir(args.model), modes, kv_cache=args.kv_cache,
                        group_size=args.group_size, new_tokens=args.new_tokens,
                        smoothquant_alpha=args.smoothquant_alpha,
                        engine_weights=_engine_weights(args.engine_weights),
                        out_dir=args.output_dir)
    print(report.markdown())
    return 0


def _labels(text: str | None) -> set[str] | None:
    return None if text is None else {s.strip() for s in text.split(",") if s.strip()}


def _compression_report(args, teacher_dir: Path) -> int:
    from tritonllm.build.compression import compression_report

    students = compression_report.parse_students(args.students)
    curve = _read_curve(args.curve) if args.curve else None
    for student in students:
        if not (student.model_dir / "config.json").is_file():
            raise ValueError(f"--students: {student.label}: {student.model_dir} has no "
                             "config.json")
        if student.mode != "none":
            from tritonllm.build.quantization.accuracy import check_simulable

            check_simulable([student.mode])
    rows = compression_report.run_report(teacher_dir, students, args.output_dir,
                                         requests=args.requests, rounds=args.rounds,
                                         speed=not args.no_speed,
                                         speed_of=_labels(args.speed_of))
    print(compression_report.markdown(rows, args.requests, args.rounds))
    if curve:
        from tritonllm.build.compression import distill_curve

        info = distill_curve.write(curve[1], rows[0].perplexity, args.output_dir, curve[0])
        print(json.dumps(info, indent=2))
    return 0


def _read_curve(text: str) -> tuple[str, list[dict]]:
    from tritonllm.build.compression import distill_curve

    label, sep, path = text.partition("=")
    if not sep or not label or not path:
        raise ValueError(f"--curve: expected LABEL=PATH, got {text!r}")
    return label, distill_curve.load(Path(path))
