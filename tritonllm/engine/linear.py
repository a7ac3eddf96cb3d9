"""The engine's linear layers: ``x [M, K] @ W.T`` over fp32, int8 or int4 weights, through our
kernels (``cpu_kernels``) where they run, else oneDNN's packed fp32 linear or fbgemm's dynamic
int8 linear (what each is picked for is said where it is chosen).
"""

from __future__ import annotations

import functools
import logging

import torch
import torch.nn.functional as F

from tritonllm.engine import cpu_kernels

log = logging.getLogger(__name__)


class Linear:
    """``y = x @ weight.T + bias``: ``x [M, in]`` fp32 → ``[M, out]`` fp32, weight kept once.

    Kernels, best first (``backend``):

    - ``kernels``: our ``tl_linear_f32`` (:mod:`cpu_kernels`) for every M, on the weight in
      panels (:func:`cpu_kernels.pack_panels`). Decode steps are bound by reading the weight;
      prompt chunks by arithmetic (docs/cpu-engine.md, "CPU kernels", for both against oneDNN).
    - ``onednn``: the weight pre-packed in oneDNN's blocked layout, oneDNN's linear for every M
      (2-3x ``F.linear`` at decode shapes).
    - ``torch``: ``F.linear`` (MKL).
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None,
                 backend: str | None = None) -> None:
        self.out_features, self.in_features = weight.shape
        self.bias = bias
        self.kernels = cpu_kernels.load() if backend in (None, "kernels") else None
        self.backend = backend or ("kernels" if self.kernels is not None else
                                   "onednn" if onednn_linear_works() else "torch")
        if self.backend == "kernels" and self.kernels is None:
            raise ValueError("Linear: backend 'kernels' is unavailable here (see cpu_kernels)")
        if self.backend == "kernels":
            self.weight = cpu_kernels.pack_panels(weight.float())
        elif self.backend == "onednn":
            self.weight = torch.ops.mkldnn._reorder_linear_weight(weight)
        else:
            self.weight = weight.contiguous()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.backend == "kernels":
            return cpu_kernels.linear(self.kernels, x, self.weight, self.bias,
                                      out_features=self.out_features)
        if self.backend == "onednn":
            return torch.ops.mkldnn._linear_pointwise(x, self.weight, self.bias, "none", [], "")
        return F.linear(x, self.weight, self.bias)

    def dense_weight(self) -> torch.Tensor:
        """The weight as a plain ``[out, in]`` tensor (a copy when packed)."""
        if self.backend == "kernels":
            return cpu_kernels.unpack_panels(self.weight, self.out_features, self.in_features)
        return self.weight.to_dense() if self.backend == "onednn" else self.weight

    def rows(self, ids: torch.Tensor) -> torch.Tensor:
        """Rows ``ids`` of the weight, ``[len(ids), in]``, read in the panels (backend
        ``kernels`` only: the embedding lookup of a model that ties its embedding to this
        layer; other backends keep the embedding beside it, :func:`weights.load_weights`)."""
        panel = cpu_kernels.PANEL
        return self.weight[ids // panel, :, ids % panel]

    def kernel_operands(self):
        """``(weight, scale, bias, block scale)`` as our kernels take them (backend ``kernels``
        only)."""
        return self.weight, None, self.bias, None


@functools.lru_cache(maxsize=1)
def onednn_linear_works() -> bool:
    """True when torch's oneDNN linear (packed and plain weights) agrees with ``F.linear``."""
    if not torch.backends.mkldnn.is_available():
        return False
    try:
        weight, x = torch.randn(24, 16), torch.randn(3, 16)
        packed = torch.ops.mkldnn._reorder_linear_weight(weight)
        ys = [torch.ops.mkldnn._linear_pointwise(x, w, None, "none", [], "")
              for w in (packed, weight)]
    except (AttributeError, RuntimeError):
        return False
    return all(torch.allclose(y, F.linear(x, weight), atol=1e-4) for y in ys)


class Int8Linear:
    """``y = x @ (q * scale[:, None]).T + bias`` with int8 weights ``q [out, in]`` and one fp32
    scale per output channel (symmetric, TensorRT-LLM's per-channel weight-only recipe).

    With our kernels (:mod:`cpu_kernels`, ``tl_linear_i8``): each row of activations is rounded
    to 15-bit integers with its own scale and multiplied with the int8 weights exactly in int32
    (AVX-512 VNNI ``vpdpwssd``, or AVX2 ``vpmaddwd``), so the error is the weights' int8
    rounding plus at most 2^-15 of each row's largest value: TensorRT-LLM's W8A16 numbers in
    effect. Every call, long prompt chunks included (there it outran dequantizing the weight for
    oneDNN's fp32 linear), on the weight in panels (:func:`cpu_kernels.pack_panels`).

    Without them, fbgemm's dynamic int8 linear (``quantized::linear_prepack`` +
    ``quantized::linear_dynamic``), which quantizes its input to uint8 with one scale per call,
    multiplies in int32 and rescales to fp32. Used as is, that costs accuracy (SmolLM2: +12 %
    perplexity): one scale per call is set by the batch's largest row, and on CPUs without
    VNNI activations get 7 bits (``reduce_range``: AVX2's ``vpmaddubsw`` adds pairs of
    products in saturating int16; with 8 bits the output is garbage). So each call here:

    1. scales every row to max |x| = 1 (per-row activation scales: a prompt's small rows no
       longer share one coarse grid with its largest row), and
    2. runs the kernel twice: on the rows, then on what rounding them to the kernel's 7-bit grid
       lost (the grid is ``torch._choose_qparams_per_tensor``'s, the kernel's own choice), so
       activations carry ~14 bits and the error left is the weights' int8 rounding.

    SmolLM2, perplexity on the accuracy report's text, every linear layer (lm_head included)
    in int8: docs/cpu-engine.md, "int8 weights"; ModelOpt's simulated int8 weight-only: +0.4 %.

    Why not torch's or torchao's int8 kernels (torch 2.13, torchao 0.18): ``torch._int_mm``
    (what torchao's ``Int8DynamicActivationInt8WeightConfig`` runs in eager mode) has no fast
    CPU path (~170x slower than fbgemm here), ``aten._weight_int8pack_mm`` is 3x slower than
    fp32 at M=1, and oneDNN's fp16 weights need AVX512-FP16 or AVX-NE-CONVERT. torch
    deprecated the qint8 tensor type (pytorch/pytorch#184982) that ``linear_prepack`` takes: it
    is built once per weight at load (:func:`fbgemm_pack`); the ops do not warn.
    :func:`int8_linear_works` says whether either path works here; ``weights: int8`` refuses to
    start without one.
    """

    def __init__(self, qweight: torch.Tensor, scale: torch.Tensor,
                 bias: torch.Tensor | None = None, backend: str | None = None) -> None:
        self.out_features, self.in_features = qweight.shape
        self.scale = scale.float().contiguous()
        self.bias = bias
        self.kernels = cpu_kernels.load() if backend in (None, "kernels") else None
        self.backend = backend or ("kernels" if self.kernels is not None else "fbgemm")
        if self.backend == "kernels":
            if self.kernels is None:
                raise ValueError("Int8Linear: backend 'kernels' is unavailable here")
            self.qweight = cpu_kernels.pack_panels(qweight)
        else:
            self.packed = fbgemm_pack(qweight, self.scale, None)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.backend == "kernels":
            return cpu_kernels.linear(self.kernels, x, self.qweight, self.bias, self.scale,
                                      out_features=self.out_features)
        rows = torch.linalg.vector_norm(x, float("inf"), dim=1, keepdim=True).clamp_(min=1e-30)
        x = x / rows
        scale, zero_point = torch._choose_qparams_per_tensor(x, True)
        lost = x - torch.fake_quantize_per_tensor_affine(x, scale, zero_point, 0, 127)
        y = torch.ops.quantized.linear_dynamic(x, self.packed, True)
        y = y.add_(torch.ops.quantized.linear_dynamic(lost, self.packed, True)).mul_(rows)
        return y if self.bias is None else y.add_(self.bias)

    def int8_weight(self) -> torch.Tensor:
        """The int8 values ``[out, in]`` (a copy where our kernels hold them in panels)."""
        if self.backend == "kernels":
            return cpu_kernels.unpack_panels(self.qweight, self.out_features, self.in_features)
        return torch.ops.quantized.linear_unpack(self.packed)[0].int_repr()

    def kernel_operands(self):
        """``(weight, scale, bias, block scale)`` as our kernels take them (backend ``kernels``
        only)."""
        return self.qweight, self.scale, self.bias, None

    @classmethod
    def from_float(cls, weight: torch.Tensor, bias: torch.Tensor | None = None,
                   backend: str | None = None) -> "Int8Linear":
        return cls(*quantize_per_channel(weight), bias, backend=backend)


def quantize_per_channel(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric int8 per output channel: ``scale = max|w_row| / 128``, ``q = round(w / scale)``
    clipped to [-128, 127]: what TensorRT-LLM does to a W8A16 checkpoint's weights when it builds
    the engine (``symmetric_quantize`` in
    ``cpp/tensorrt_llm/kernels/cutlass_kernels/cutlass_preprocessors.cpp``, commit 05316d33)."""
    weight = weight.float()
    scale = (weight.abs().amax(dim=1) / 128.0).clamp(min=1e-12)
    q = torch.round(weight / scale[:, None]).clamp(-128, 127).to(torch.int8)
    return q.contiguous(), scale


def fbgemm_pack(qweight: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None):
    """fbgemm's packed int8 weight from plain int8 values and per-row scales."""
    import warnings

    zero = torch.zeros(qweight.shape[0], dtype=torch.long)
    with warnings.catch_warnings():  # the qint8 dtype's deprecation: see Int8Linear
        warnings.simplefilter("ignore", UserWarning)
        qtensor = torch._make_per_channel_quantized_tensor(qweight, scale.double(), zero, 0)
    return torch.ops.quantized.linear_prepack(qtensor, bias)


def int8_linear_works() -> bool:
    """True when int8 weights can run here (our kernels, or fbgemm's) and compute what they
    should."""
    try:
        weight, x = torch.randn(24, 16), torch.randn(3, 16)
        y = Int8Linear.from_float(weight)(x)
    except (AttributeError, RuntimeError, NotImplementedError):
        return False
    reference = F.linear(x, weight)
    return bool((y - reference).norm() <= 0.05 * reference.norm())


INT4_BLOCK = 32  # values per block: 16 packed bytes and one integer scale
INT4_RUN = 8  # blocks per fp32 scale: SUPER in csrc/cpu_kernels.cpp (the int4 kernel tests fail
# if the two differ)
INT4_BLOCK_SCALE_MAX = 63  # block scales are 1..63 (6 bits, as llama.cpp's K-quants)
INT4_CLIP_STEPS = 13  # scales tried per block, from max|w| / 7 down to 0.7 of it


class Int4Linear:
    """``y = x @ W.T + bias`` with int4 weights: ``w = q * block_scale * scale`` with ``q`` in
    [-8, 7], an integer ``block_scale`` (1..63) per 32 values and an fp32 ``scale`` per run of 8
    blocks (256 values; the row's last run may be shorter). 4.3 bits per weight.

    Scales (:func:`quantize_int4`): each block's ideal scale is the one of ``INT4_CLIP_STEPS``
    clippings of ``max|w| / 7`` (down to 0.7 of it) with the least squared error over the block
    (no calibration data: AWQ and GPTQ also weigh the error by activations); the run's ``scale``
    is its largest ideal scale / 63 and each block's the nearest integer multiple of it.
    ``per_channel``: one scale per output row and every block scale 1, as TensorRT-LLM quantizes
    a W4A16 checkpoint at build time (``symmetric_quantize`` in
    ``cpp/tensorrt_llm/kernels/cutlass_kernels/cutlass_preprocessors.cpp``: ``max|w| / 8``,
    rounded, clipped to [-8, 7]).

    Our kernel only (``tl_linear_i4``): activations rounded to 15 bits per row as for int8; the
    unpacked block times its integer scale is summed exactly in int32 over the run, then scaled
    into fp32 (once per 256 values: per block it cost more than the products). The constructor
    takes :func:`quantize_int4`'s packing (each row ``in / 2`` bytes in blocks of 32 values, 16
    bytes; byte ``t`` of a block holds value ``t`` + 8 in its low nibble and value ``t + 16`` + 8
    in its high one) and keeps the kernel's panels (:func:`cpu_kernels.pack_int4_panels`).

    Accuracy on SmolLM2-135M: docs/cpu-engine.md, "int4 weights".
    """

    def __init__(self, packed: torch.Tensor, block_scale: torch.Tensor, scale: torch.Tensor,
                 bias: torch.Tensor | None = None) -> None:
        self.kernels = cpu_kernels.load()
        if self.kernels is None:
            raise ValueError("weights: int4 needs our CPU kernels (cpu_kernels: AVX2 or "
                             "AVX-512, a C++ compiler); they cannot run here")
        self.out_features, self.in_features = packed.shape[0], 2 * packed.shape[1]
        self.packed, self.block_scale, self.scale = cpu_kernels.pack_int4_panels(
            unpack_int4(packed), block_scale, scale)
        self.bias = bias
        self.backend = "kernels"

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return cpu_kernels.linear(self.kernels, x, self.packed, self.bias, self.scale,
                                  self.block_scale, out_features=self.out_features)

    def kernel_operands(self):
        """``(weight, scale, bias, block scale)`` as our kernels take them."""
        return self.packed, self.scale, self.bias, self.block_scale

    def dequantized(self) -> torch.Tensor:
        """The weight the kernel multiplies with, ``[out, in]`` fp32 (for references)."""
        return _dequantize(*cpu_kernels.unpack_int4_panels(
            self.packed, self.block_scale, self.scale, self.out_features))

    @classmethod
    def from_float(cls, weight: torch.Tensor, bias: torch.Tensor | None = None,
                   per_channel: bool = False) -> "Int4Linear":
        return cls(*quantize_int4(weight, per_channel), bias)


def _block_scales(blocks: torch.Tensor) -> torch.Tensor:
    """Per block of ``blocks [out, n, 32]``: the clipping of ``max|w| / 7`` with the least
    squared error."""
    top = (blocks.abs().amax(dim=2) / 7.0).clamp(min=1e-12)
    best, least = top, None
    for fraction in torch.linspace(1.0, 0.7, INT4_CLIP_STEPS).tolist():
        trial = top * fraction
        error = (torch.round(blocks / trial[:, :, None]).clamp(-8, 7) * trial[:, :, None]
                 - blocks).square().sum(dim=2)
        better = error < least if least is not None else torch.ones_like(error, dtype=torch.bool)
        best = torch.where(better, trial, best)
        least = error if least is None else torch.where(better, error, least)
    return best


def quantize_int4(weight: torch.Tensor, per_channel: bool = False
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(packed uint8 [out, in / 2], block_scale uint8 [out, in / 32], scale fp32
    [out, ceil(in / 256)])`` (see ``Int4Linear``)."""
    out_features, in_features = weight.shape
    if in_features % INT4_BLOCK:
        raise ValueError(f"weights: int4 needs input widths that are multiples of "
                         f"{INT4_BLOCK}; this layer's is {in_features}")
    blocks = weight.float().view(out_features, -1, INT4_BLOCK)
    count = blocks.shape[1]
    runs = -(-count // INT4_RUN)
    if per_channel:  # TensorRT-LLM's symmetric_quantize: max|w| / 2^(bits - 1), then clip
        row = (weight.float().abs().amax(dim=1) / 8.0).clamp(min=1e-12)
        scale = row[:, None].expand(out_features, runs).contiguous()
        block_scale = torch.ones(out_features, count, dtype=torch.uint8)
    else:
        ideal = _block_scales(blocks)
        padded = torch.nn.functional.pad(ideal, (0, runs * INT4_RUN - count))
        scale = padded.view(out_features, runs, INT4_RUN).amax(dim=2) / INT4_BLOCK_SCALE_MAX
        block_scale = torch.round(ideal / _per_block(scale, count)).clamp(
            1, INT4_BLOCK_SCALE_MAX).to(torch.uint8)
    step = _block_steps(block_scale, scale)
    q = torch.round(blocks / step[:, :, None]).clamp(-8, 7).to(torch.int8)
    nibbles = (q.view(out_features, count, 2, INT4_BLOCK // 2) + 8).to(torch.uint8)
    packed = nibbles[:, :, 0] | (nibbles[:, :, 1] << 4)
    return packed.reshape(out_features, in_features // 2).contiguous(), block_scale, scale


def unpack_int4(packed: torch.Tensor) -> torch.Tensor:
    """The int8 values ``q [out, in]`` of ``quantize_int4``'s packing."""
    blocks = packed.view(packed.shape[0], -1, INT4_BLOCK // 2)
    low, high = (blocks & 0x0F).to(torch.int8) - 8, (blocks >> 4).to(torch.int8) - 8
    return torch.stack([low, high], dim=2).reshape(packed.shape[0], -1)


def dequantize_int4(packed: torch.Tensor, block_scale: torch.Tensor, scale: torch.Tensor
                    ) -> torch.Tensor:
    """``q * block_scale * scale`` as ``[out, in]`` fp32."""
    return _dequantize(unpack_int4(packed), block_scale, scale)


def _dequantize(q: torch.Tensor, block_scale: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """int4 values ``q [out, in]`` times their block and run scales, fp32."""
    step = _block_steps(block_scale, scale)
    blocks = q.float().view(q.shape[0], block_scale.shape[1], INT4_BLOCK)
    return (blocks * step[:, :, None]).view(q.shape[0], -1)


def _per_block(scale: torch.Tensor, count: int) -> torch.Tensor:
    """Each of ``count`` blocks' run scale, ``[out, count]``."""
    return scale.repeat_interleave(INT4_RUN, dim=1)[:, :count]


def _block_steps(block_scale: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Each block's quantization step, ``block_scale * scale``, ``[out, blocks]``."""
    return block_scale.float() * _per_block(scale, block_scale.shape[1])
