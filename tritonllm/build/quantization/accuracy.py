"""Accuracy of each quantization mode, measured on CPU before any GPU is spent.

For each mode the model is quantized with ModelOpt's simulated (fake) quantization, calibrated
on the bundled corpus like the export is (``modelopt_configs.for_simulation``), and compared
with the unquantized float32 model:

- perplexity on ``corpus.HELDOUT`` (never used for calibration), and its change in percent;
- top-1 agreement: share of held-out positions where both models predict the same next token;
- greedy agreement: share of the first ``new_tokens`` greedy tokens, position by position,
  that equal the reference's, over ``corpus.PROMPTS``.

Mode ``none`` is the 16-bit checkpoint: float32 weights rounded through float16.

``engine_weights`` adds the CPU engine's own serving paths (``EngineConfig.weights``), measured
the same way through ``ModelRunner`` (perplexity and top-1 from one prefill per window, greedy
tokens from ``LLMEngine``): rows ``CPU engine fp32`` (should equal the reference) and
``CPU engine int8`` (int8 weights per channel; what ``--weights int8`` and a cpu profile with
``quantization.mode: int8_wo`` serve). With our CPU kernels the prefill behind perplexity and
top-1 multiplies the dequantized weights in fp32 (long chunks), and the greedy tokens' decode
steps round activations to 15 bits (``Int8Linear``); without them both run fbgemm's kernels.
Written as ``accuracy.json`` and ``accuracy.md`` (a Markdown table).
"""

from __future__ import annotations

import copy
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from tritonllm.build import corpus

from tritonllm.build.quantization import modelopt_configs
from tritonllm.build.profile import QuantSpec
from tritonllm.build.quantization.quant_modes import MODES

WINDOW = 512  # tokens per perplexity window


@dataclass(frozen=True)
class ModeAccuracy:
    mode: str
    settings: str  # the mode's knobs that matter: AWQ group size, SmoothQuant alpha
    kv_cache: str
    perplexity: float
    perplexity_change_pct: float
    top1_agreement: float
    greedy_agreement: float
    seconds: float


@dataclass(frozen=True)
class AccuracyReport:
    model: str
    reference_perplexity: float
    heldout_tokens: int
    new_tokens: int
    prompts: int
    rows: tuple[ModeAccuracy, ...]

    def to_dict(self) -> dict:
        return asdict(self)

    def markdown(self) -> str:
        head = [f"Accuracy on CPU, {self.model}: perplexity on {self.heldout_tokens} held-out "
                f"tokens; greedy agreement over {self.prompts} prompts x {self.new_tokens} "
                "tokens; reference: the float32 model.", "",
                "| mode | settings | KV cache | perplexity | change | top-1 agreement "
                "| greedy agreement |",
                "|---|---|---|---:|---:|---:|---:|",
                f"| float32 (reference) | - | - | {self.reference_perplexity:.3f} | - | - | - |"]
        rows = [f"| {r.mode} | {r.settings or '-'} | {r.kv_cache} | {r.perplexity:.3f} | "
                f"{r.perplexity_change_pct:+.2f} % | {100 * r.top1_agreement:.1f} % | "
                f"{100 * r.greedy_agreement:.1f} % |" for r in self.rows]
        return "\n".join(head + rows) + "\n"


@dataclass(frozen=True)
class _Outputs:
    nll: float  # mean negative log-likelihood per held-out token
    argmax: torch.Tensor  # predicted next token at every held-out position
    greedy: list[list[int]]


def evaluate(model, heldout: list[torch.Tensor], prompts: list[list[int]], new_tokens: int
             ) -> _Outputs:
    total, count, argmax = 0.0, 0, []
    with torch.no_grad():
        for ids in heldout:
            logits = model(ids[None]).logits[0, :-1].float()
            total += torch.nn.functional.cross_entropy(logits, ids[1:], reduction="sum").item()
            count += len(ids) - 1
            argmax.append(logits.argmax(-1))
        greedy = [_greedy(model, p, new_tokens) for p in prompts]
    return _Outputs(total / count, torch.cat(argmax), greedy)


def _greedy(model, prompt: list[int], new_tokens: int) -> list[int]:
    out = model.generate(torch.tensor([prompt]), max_new_tokens=new_tokens,
                         min_new_tokens=new_tokens, do_sample=False, pad_token_id=0)
    return out[0, len(prompt):].tolist()


def agreement(a: list[list[int]], b: list[list[int]]) -> float:
    pairs = [(x, y) for ra, rb in zip(a, b) for x, y in zip(ra, rb)]
    return sum(x == y for x, y in pairs) / len(pairs)


def simulated(model, tokenizer, q: QuantSpec):
    """A copy of ``model`` with ``q``'s rounding simulated (ModelOpt fake quantization; the
    weights' rounding folded into the weights once, activations rounded on every forward)."""
    import modelopt.torch.quantization as mtq

    from tritonllm.build.quantization.quantize import calibration_windows

    copy_ = copy.deepcopy(model)
    if q.mode == "none":
        copy_ = copy_.half().float()
    config = modelopt_configs.for_simulation(q)
    if config is None:
        return copy_
    windows = calibration_windows(tokenizer, q)

    def forward_loop(m) -> None:
        with torch.no_grad():
            for window in tqdm(windows, desc=f"calibrating {q.mode}", leave=False):
                m(window)

    quantized = mtq.quantize(copy_, config, forward_loop)
    mtq.fold_weight(quantized)  # weights rounded once, not on every forward (same numbers)
    return quantized


def run_report(model_dir: Path, modes: list[str], kv_cache: str = "none", group_size: int = 64,
               new_tokens: int = 32, out_dir: Path | None = None, calibration_samples: int = 16,
               calibration_max_len: int = 256, awq_alpha_step: float = 0.1,
               smoothquant_alpha: float = 0.5, prompts: tuple[str, ...] = corpus.PROMPTS,
               heldout_text: str = corpus.HELDOUT, engine_weights: tuple[str, ...] = ()
               ) -> AccuracyReport:
    """Measure every mode in ``modes`` (see the module docstring); write JSON + Markdown when
    ``out_dir`` is given."""
    from transformers import AutoModelForCausalLM

    from tritonllm.tokenizer import load_tokenizer

    check_simulable(modes)
    tokenizer = load_tokenizer(model_dir)
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32).eval()
    ids = tokenizer(heldout_text, return_tensors="pt").input_ids[0]
    heldout = list(ids.split(WINDOW))
    prompt_ids = [tokenizer(p).input_ids for p in prompts]
    reference = evaluate(model, heldout, prompt_ids, new_tokens)
    rows = []
    for mode in tqdm(modes, desc="modes", unit="mode"):
        start = time.monotonic()
        q = QuantSpec(mode=mode, kv_cache=kv_cache, group_size=group_size,
                      calibration_samples=calibration_samples,
                      calibration_max_len=calibration_max_len, awq_alpha_step=awq_alpha_step,
                      smoothquant_alpha=smoothquant_alpha)
        result = evaluate(simulated(model, tokenizer, q), heldout, prompt_ids, new_tokens)
        rows.append(_row(q, reference, result, time.monotonic() - start))
    for weights in tqdm(engine_weights, desc="CPU engine", unit="weights"):
        start = time.monotonic()
        result = engine_outputs(model_dir, weights, heldout, prompt_ids, new_tokens)
        rows.append(_row(QuantSpec(mode="none"), reference, result, time.monotonic() - start,
                         mode=f"CPU engine {weights}", settings=_ENGINE_SETTINGS[weights]))
    report = AccuracyReport(Path(model_dir).name, math.exp(reference.nll), len(ids), new_tokens,
                            len(prompts), tuple(rows))
    if out_dir is not None:
        _write(report, Path(out_dir))
    return report


def simulable_modes() -> list[str]:
    """The modes ModelOpt can simulate here: NVFP4's fake quantization runs on CUDA only."""
    return [m for m in MODES if torch.cuda.is_available() or not MODES[m].needs_fp4]


def check_simulable(modes: list[str]) -> None:
    for mode in modes:
        QuantSpec(mode=mode)  # names the field for an unknown mode
        if MODES[mode].needs_fp4 and not torch.cuda.is_available():
            raise ValueError(f"--modes: {mode} cannot be simulated without a CUDA GPU "
                             "(ModelOpt's FP4 block quantization is CUDA-only); its export and "
                             "verification do run on CPU")


_ENGINE_SETTINGS = {"fp32": "weights fp32", "int8": "weights int8 per channel",
                    "int4": "weights int4, scales per 32 and per 256 values (lm_head int8)"}


def engine_outputs(model_dir: Path, weights: str, heldout: list[torch.Tensor],
                   prompts: list[list[int]], new_tokens: int) -> _Outputs:
    """``evaluate`` through the CPU engine's runner with ``weights`` (fp32, int8 or int4)."""
    from tritonllm.engine import EngineConfig, GenerationRequest, LLMEngine, SamplingParams
    from tritonllm.engine.runner import ModelRunner

    longest = max([len(w) for w in heldout] + [len(p) + new_tokens for p in prompts])
    config = EngineConfig(max_batch_size=8, max_num_tokens=max(longest, 8),
                          max_input_len=longest, max_seq_len=longest + 1,
                          max_tokens_in_paged_kv_cache=8 * (longest + 1),
                          num_threads=torch.get_num_threads(), weights=weights)
    runner = ModelRunner.from_hf_dir(model_dir, config)
    total, count, argmax = 0.0, 0, []
    for ids in heldout:
        logits = runner.prompt_logits(ids.tolist())[:-1]
        total += torch.nn.functional.cross_entropy(logits, ids[1:], reduction="sum").item()
        count += len(ids) - 1
        argmax.append(logits.argmax(-1))
    engine = LLMEngine(runner, config)
    try:
        outputs = engine.generate([GenerationRequest(
            f"accuracy-{i}", p, new_tokens, exclude_input_in_output=True,
            sampling=SamplingParams(min_tokens=new_tokens)) for i, p in enumerate(prompts)])
    finally:
        engine.shutdown()
    return _Outputs(total / count, torch.cat(argmax), [o[-1].token_ids for o in outputs])


def _row(q: QuantSpec, reference: _Outputs, result: _Outputs, seconds: float,
         mode: str | None = None, settings: str | None = None) -> ModeAccuracy:
    ppl, ref_ppl = math.exp(result.nll), math.exp(reference.nll)
    return ModeAccuracy(
        mode=mode or q.mode, settings=_settings(q) if settings is None else settings,
        kv_cache=q.kv_cache, perplexity=ppl,
        perplexity_change_pct=100 * (ppl / ref_ppl - 1),
        top1_agreement=(result.argmax == reference.argmax).float().mean().item(),
        greedy_agreement=agreement(result.greedy, reference.greedy), seconds=seconds)


def _settings(q: QuantSpec) -> str:
    if q.quant_mode.grouped:
        return f"group {q.group_size}"
    if q.mode == "int8_sq":
        return f"alpha {q.smoothquant_alpha}"
    return ""


def _write(report: AccuracyReport, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "accuracy.json").write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    (out_dir / "accuracy.md").write_text(report.markdown())
