"""``tritonllm bench roofline``: this machine's limits, and how close the engine's model steps
come to them.

1. The machine, per thread count: the rate at which the cores read memory (a sum over a buffer
   far larger than the caches, in huge pages like the engine's weights), and the peak rate of
   the instructions the kernels use: fp32 FMAs, and int16 pair products summed into int32
   (int8 weights), for every build of the kernels this CPU runs (``kernel_build.ISAS``; probes
   in ``csrc/roofline.cpp``).
2. The model's ceilings: a decode step of B rows reads every linear weight once (fp32: 4 bytes
   per parameter, int8: 1, int4: 1/2, plus their scales) and computes 2 flops per parameter per
   row, so it takes at least max(bytes / read rate, flops / peak rate); a prompt chunk is bound
   by the flops alone.
3. The engine's own step at the same point (``ModelRunner.forward`` plus greedy sampling, the
   kernels the engine chose), as a fraction of its ceiling.

The limits leave out attention (small at short contexts) and everything outside the model
step; serving adds tokenization, HTTP and tritonserver on the same cores. Memory is shared with
the machine's neighbours: a fraction above 1 means the probe caught a busier moment than the
step did.
"""

from __future__ import annotations

import argparse
import ctypes
from dataclasses import dataclass, replace
from pathlib import Path

PROBES = Path(__file__).with_name("csrc") / "roofline.cpp"
READ_MIB = 1024  # far beyond any L3 here (32 MiB)
WEIGHTS = ("fp32", "int8", "int4")
READ_TRIES = 6  # the read rate of a shared machine's memory varies most: the best of several


@dataclass(frozen=True)
class Limits:
    """One thread count's measured limits: GB/s read, and per build GFLOP/s (fp32 FMA) and
    G products/s (int16 dot, the int8 kernels' inner step)."""

    threads: int
    read_gbs: float
    fma_gflops: dict[str, float]
    dot_gops: dict[str, float]


def _probes(isa):
    from tritonllm.engine import kernel_build

    lib = ctypes.CDLL(str(kernel_build.build(isa, PROBES)))
    lib.tl_probe_fma.argtypes = lib.tl_probe_dot16.argtypes = [ctypes.c_int64, ctypes.c_int]
    lib.tl_probe_read.argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_int, ctypes.c_int]
    for name in ("tl_probe_fma", "tl_probe_dot16", "tl_probe_read"):
        getattr(lib, name).restype = ctypes.c_double
    return lib


def _best_rate(work: float, timed, tries: int = 3) -> float:
    """work / the fastest of a few timed runs (noise on a shared machine only slows runs)."""
    return work / min(timed() for _ in range(tries))


def measure_limits(threads_list: list[int]) -> list[Limits]:
    import torch

    from tritonllm.engine import huge_pages, kernel_build

    isas = kernel_build.supported_isas()
    libs = {isa.name: _probes(isa) for isa in isas}
    # in huge pages where granted, as the engine keeps its weights
    buffer = huge_pages.zeros(READ_MIB * 2 ** 20).view(torch.float32).fill_(1.0)
    out = []
    for threads in threads_list:
        fma, dot = {}, {}
        for name, lib in libs.items():
            iters = 2 ** 22
            # per call: iters x chains vector steps per thread, 2 flops (fp32) or 2 int16
            # products (dot) per lane
            work = iters * lib.tl_probe_chains() * threads * lib.tl_probe_floats_per_vector() * 2
            fma[name] = _best_rate(work, lambda: lib.tl_probe_fma(iters, threads)) / 1e9
            dot[name] = _best_rate(work, lambda: lib.tl_probe_dot16(iters, threads)) / 1e9
        first = next(iter(libs.values()))
        read = _best_rate(buffer.numel() * 4 * 2, lambda: first.tl_probe_read(
            buffer.data_ptr(), buffer.numel(), threads, 2), tries=READ_TRIES) / 1e9
        out.append(Limits(threads, read, fma, dot))
    return out


def format_limits(limits: list[Limits]) -> str:
    names = list(limits[0].fma_gflops)
    head = (f"{'threads':>7}  {'read GB/s':>9}  "
            + "  ".join(f"{'fp32 GFLOP/s ' + n:>19}" for n in names) + "  "
            + "  ".join(f"{'int16 dot Gprod/s ' + n:>24}" for n in names))
    rows = [head, "-" * len(head)]
    for lim in limits:
        rows.append(f"{lim.threads:>7}  {lim.read_gbs:>9.1f}  "
                    + "  ".join(f"{lim.fma_gflops[n]:>19.1f}" for n in names) + "  "
                    + "  ".join(f"{lim.dot_gops[n]:>24.1f}" for n in names))
    return "\n".join(rows)


@dataclass(frozen=True)
class Ceiling:
    weights: str
    phase: str  # "decode B=<rows>" or "prefill <tokens>"
    threads: int
    bound: str  # "memory" or "compute"
    ceiling: float  # tokens/s
    measured: float  # tokens/s

    @property
    def fraction(self) -> float:
        return self.measured / self.ceiling


def ceiling_tok_s(params: int, weight_bytes: int, tokens: int, limits: Limits, integer: bool,
                  isa: str, decode: bool) -> tuple[float, str]:
    """Tokens/s at the limit for a step of ``tokens`` rows, and what binds it (``integer``:
    int8 or int4 weights, multiplied by int16 dot products)."""
    peak = (limits.dot_gops[isa] if integer else limits.fma_gflops[isa] / 2) * 1e9  # products/s
    compute = tokens * params / peak
    memory = weight_bytes / (limits.read_gbs * 1e9) if decode else 0.0
    return tokens / max(compute, memory), "memory" if memory > compute else "compute"


def measure_engine(model_dir, config, limits: list[Limits], rows_list: list[int],
                   prompt_tokens: int, reps: int) -> list[Ceiling]:
    import torch

    from tritonllm.bench.step_profile import decode_batch, median_ms, sequences, weight_bytes
    from tritonllm.engine import kernel_build
    from tritonllm.engine.runner import ModelRunner
    from tritonllm.engine.sampler import Sampler

    isa = kernel_build.status().isa
    isa_name = isa.name if isa is not None else kernel_build.ISAS[-1].name
    out = []
    for weights in WEIGHTS:
        runner = ModelRunner.from_hf_dir(model_dir, replace(config, weights=weights))
        params = sum(lin.in_features * lin.out_features for lin in runner.weights.linears())
        nbytes = weight_bytes(runner)
        integer = weights != "fp32"
        for lim in limits:
            runner.set_threads(lim.threads)
            for rows in rows_list:
                batch = decode_batch(runner, rows, context=64)
                seqs = sequences(rows)

                def step():
                    logits = runner.forward(batch)
                    Sampler().sample(logits, seqs, [[2]] * rows)
                ceiling, bound = ceiling_tok_s(params, nbytes, rows, lim, integer, isa_name,
                                               decode=True)
                out.append(Ceiling(weights, f"decode B={rows}", lim.threads, bound, ceiling,
                                   1000 * rows / median_ms(step, reps)))
            prompt = runner.prompt_batch([100 + i % 1000 for i in range(prompt_tokens)])
            ceiling, bound = ceiling_tok_s(params, nbytes, prompt_tokens, lim, integer,
                                           isa_name, decode=False)
            with torch.inference_mode():
                ms = median_ms(lambda: runner.forward(prompt), max(2, reps // 4))
            out.append(Ceiling(weights, f"prefill {prompt_tokens}", lim.threads, bound, ceiling,
                               1000 * prompt_tokens / ms))
    return out


def format_ceilings(rows: list[Ceiling]) -> str:
    head = (f"{'weights':8}{'step':>15}{'threads':>9}{'bound':>9}{'ceiling tok/s':>15}"
            f"{'engine tok/s':>14}{'fraction':>10}")
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r.weights:8}{r.phase:>15}{r.threads:>9}{r.bound:>9}{r.ceiling:>15.1f}"
                     f"{r.measured:>14.1f}{r.fraction:>10.2f}")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=None,
                        help="a local Hugging Face Llama checkpoint dir (default: SmolLM2)")
    parser.add_argument("--threads", type=int, nargs="+", default=None,
                        help="thread counts to measure (default: 1 and every core)")
    parser.add_argument("--rows", type=int, nargs="+", default=[1, 8],
                        help="decode batch sizes (default: 1 8)")
    parser.add_argument("--prompt-tokens", type=int, default=512,
                        help="tokens of the measured prompt chunk (default 512, the engine's "
                             "max_num_tokens)")
    parser.add_argument("--reps", type=int, default=12, help="timed steps per point (median)")


def run(args) -> int:
    import os

    from tritonllm.engine import EngineConfig, kernel_build
    from tritonllm.model_source import resolve_model_dir

    cores = len(os.sched_getaffinity(0))
    threads = args.threads or sorted({1, cores})
    print(f"kernels: {kernel_build.status().describe()}")
    limits = measure_limits(threads)
    print(f"machine limits ({cores} cores usable; read: {READ_MIB} MiB summed twice; peaks: "
          f"independent FMA / dot chains in registers)")
    print(format_limits(limits))
    model_dir = resolve_model_dir(args.model)
    length = max(args.prompt_tokens, 64)
    config = EngineConfig(max_batch_size=max(args.rows), max_num_tokens=length,
                          max_input_len=length, max_seq_len=length + 1,
                          max_tokens_in_paged_kv_cache=max(length, 64 * max(args.rows)) * 2)
    print(f"\nmodel {model_dir}: ceilings per step (linear layers only) vs the engine's forward "
          f"+ greedy sampling")
    print(format_ceilings(measure_engine(model_dir, config, limits, args.rows,
                                         args.prompt_tokens, args.reps)))
    return 0
