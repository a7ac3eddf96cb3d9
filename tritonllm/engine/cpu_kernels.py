"""Our C++ kernels for the CPU engine (``csrc/cpu_kernels.cpp``): compile once, load, call.

Why our own code here: a decode step reads every weight once, so its speed is the rate at which the
linear layers read weights. torch's kernels read them far below what this CPU can: oneDNN's packed
fp32 linear at M=1 runs SmolLM2's 121 linear layers in 1.4x the time of ``tl_linear_f32``
(docs/cpu-engine.md, "CPU kernels"), fbgemm's dynamic int8 linear quantizes activations to 7 bits
and needs two calls plus element-wise repairs to stay accurate, and torch/torchao have no fast
int8-weight kernel for AVX2 that keeps activations precise (``Int8Linear`` in linear.py lists what
was measured). Here int8 weights meet activations rounded to 15 bits per row (an error ~250x below
the weights' own int8 rounding, so TensorRT-LLM's W8A16 numbers in effect), decode rows attend in
place in the block cache, and a step of up to 32 tokens (decode rows and short prompt chunks) runs
each whole layer in one call.

Building and loading the library (and what happens when it cannot be used) is
:mod:`tritonllm.engine.kernel_build`'s job; :func:`load` is re-exported here. Calls release the
GIL (ctypes) and use ``torch.get_num_threads()`` OpenMP threads.
"""

from __future__ import annotations

import ctypes

import torch

from tritonllm.engine.kernel_build import MODE_ENV, load

__all__ = ["MODE_ENV", "PANEL", "WEIGHT_KINDS", "DecoderLayers", "LayerC", "StepC",
           "decode_attention", "greedy", "layer_struct", "linear", "load", "pack_int4_panels",
           "pack_panels", "unpack_int4_panels", "unpack_panels"]

_P, _I, _F = ctypes.c_void_p, ctypes.c_int64, ctypes.c_float


class LayerC(ctypes.Structure):
    """One decoder layer's weights for ``tl_decoder_layers`` (``LayerC`` in the C++ source)."""

    _fields_ = [("input_norm", _P), ("post_norm", _P)] + [
        (f"{kind}_{name}", _P) for name in ("qkv", "o", "gate_up", "down")
        for kind in ("w", "s", "b", "u")] + [("kind", _I)]


class DecoderLayers:
    """Every layer of a model for ``tl_decoder_layers``: ``LayerC`` structs and each layer's K
    and V cache plane pointers as C arrays (what they point to must outlive this)."""

    def __init__(self, structs: list[LayerC], k_planes: list[int], v_planes: list[int]) -> None:
        self.count = len(structs)
        self.structs = (LayerC * self.count)(*structs)
        self.k_planes = (_P * self.count)(*k_planes)
        self.v_planes = (_P * self.count)(*v_planes)

    def run(self, lib: ctypes.CDLL, step: "StepC", x: torch.Tensor) -> None:
        """The step's layers over the residual stream ``x`` (updated in place)."""
        lib.tl_decoder_layers(ctypes.byref(self.structs), self.count, ctypes.byref(step),
                              x.data_ptr(), ctypes.byref(self.k_planes),
                              ctypes.byref(self.v_planes))


class StepC(ctypes.Structure):
    """A step of a few tokens for ``tl_decoder_layers`` (``StepC`` in the C++ source)."""

    _fields_ = [("B", _I), ("hidden", _I), ("heads", _I), ("kv_heads", _I), ("head_dim", _I),
                ("intermediate", _I), ("eps", _F), ("softmax_scale", _F), ("cos", _P),
                ("sin", _P), ("slots", _P), ("tables", _P), ("width", _I), ("block_size", _I),
                ("contexts", _P), ("nthreads", ctypes.c_int)]


def _ptr(t: torch.Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


# ``LayerC.kind``, from the weight's dtype: fp32, int8 (a scale per row), int4 packed two per
# byte (uint8, with block and run scales; ``Int4Linear`` in linear.py says how).
WEIGHT_KINDS = {torch.float32: 0, torch.int8: 1, torch.uint8: 2}


# Rows of a weight per panel: PANEL in csrc/cpu_kernels.cpp (every kernel test fails if the two
# differ).
PANEL = 16


def pack_panels(weight: torch.Tensor) -> torch.Tensor:
    """A weight ``[N, K]`` in the layout ``tl_linear_f32`` / ``tl_linear_i8`` read, panels of
    ``PANEL`` rows (the last padded with zero rows), panel ``p`` holding rows ``p * PANEL ..``
    column by column: fp32 ``[ceil(N / PANEL), K, PANEL]``; int8 in pairs of columns,
    ``[ceil(N / PANEL), ceil(K / 2), PANEL, 2]`` (``K`` padded with a zero column when odd)."""
    n, k = weight.shape
    pair = 2 if weight.dtype == torch.int8 else 1
    padded = torch.zeros(-(-n // PANEL) * PANEL, -(-k // pair) * pair, dtype=weight.dtype)
    padded[:n, :k] = weight
    if pair == 1:
        return padded.view(-1, PANEL, k).transpose(1, 2).contiguous()
    return padded.view(-1, PANEL, padded.shape[1] // 2, 2).transpose(1, 2).contiguous()


def unpack_panels(panels: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """The plain ``[rows, cols]`` weight of :func:`pack_panels`' layout (a copy)."""
    plain = panels.transpose(1, 2).reshape(panels.shape[0] * PANEL, -1)
    return plain[:rows, :cols].contiguous()


def pack_int4_panels(q: torch.Tensor, block_scale: torch.Tensor, scale: torch.Tensor
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """int4 values ``q [N, K]`` (int8 in [-8, 7]), block scales ``[N, K / 32]`` and run scales
    ``[N, runs]`` in the layout ``tl_linear_i4`` reads: per panel of ``PANEL`` rows (the last
    padded with zero rows), per block of 32 values, 16 rows of 16 bytes (byte ``t``: lane ``t``
    in the low nibble, lane ``16 + t`` in the high one, each + 8; lane ``2c + j`` is column
    ``c``'s value ``2 * pair + j``), the block's scale per column, the run's scale per column:
    ``(uint8 [P, K / 32, 16, 16], uint8 [P, K / 32, PANEL], fp32 [P, runs, PANEL])``."""
    n, k = q.shape
    rows = -(-n // PANEL) * PANEL

    def padded(t: torch.Tensor, fill) -> torch.Tensor:
        out = torch.full((rows, t.shape[1]), fill, dtype=t.dtype)
        out[:n] = t
        return out

    lanes = padded(q, 0).to(torch.int16).view(-1, PANEL, k // 2, 2).permute(0, 2, 1, 3)
    lanes = lanes.reshape(-1, k // 2, 2 * PANEL) + 8
    packed = (lanes[..., :PANEL] | (lanes[..., PANEL:] << 4)).to(torch.uint8)

    def by_column(t: torch.Tensor, fill) -> torch.Tensor:
        return padded(t, fill).view(-1, PANEL, t.shape[1]).transpose(1, 2).contiguous()

    return (packed.view(-1, k // 32, 16, 16).contiguous(), by_column(block_scale, 1),
            by_column(scale.float(), 0.0))


def unpack_int4_panels(packed: torch.Tensor, block_scale: torch.Tensor, scale: torch.Tensor,
                       rows: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(q [rows, K] int8, block scales [rows, K / 32], run scales [rows, runs])`` from
    :func:`pack_int4_panels`' layout."""
    panels, blocks = packed.shape[:2]
    bytes_ = packed.view(panels, blocks * 16, 16).to(torch.int16)
    lanes = torch.cat([bytes_ & 0x0F, bytes_ >> 4], dim=2) - 8
    q = lanes.view(panels, blocks * 16, PANEL, 2).permute(0, 2, 1, 3).reshape(-1, blocks * 32)

    def by_row(t: torch.Tensor) -> torch.Tensor:
        return t.transpose(1, 2).reshape(-1, t.shape[1])[:rows].contiguous()

    return q[:rows].to(torch.int8).contiguous(), by_row(block_scale), by_row(scale)


def linear(lib: ctypes.CDLL, x: torch.Tensor, weight: torch.Tensor,
           bias: torch.Tensor | None = None, scale: torch.Tensor | None = None,
           block_scale: torch.Tensor | None = None, *, out_features: int) -> torch.Tensor:
    """``x [M, K]`` fp32 @ ``W [N, K]``.T (× ``scale [N]`` for int8 weights) + ``bias``. fp32
    and int8 weights come in panels (:func:`pack_panels`), int4 weights with ``block_scale``
    and ``scale`` in theirs (:func:`pack_int4_panels`); ``out_features`` = N."""
    x = x.contiguous()
    m, k = x.shape
    n = out_features
    y = torch.empty(m, n, dtype=torch.float32)
    threads = torch.get_num_threads()
    if weight.dtype == torch.uint8:
        lib.tl_linear_i4(x.data_ptr(), m, k, weight.data_ptr(), block_scale.data_ptr(),
                         scale.data_ptr(), n, _ptr(bias), y.data_ptr(), threads)
    elif weight.dtype == torch.int8:
        lib.tl_linear_i8(x.data_ptr(), m, k, weight.data_ptr(), scale.data_ptr(), n,
                         _ptr(bias), y.data_ptr(), threads)
    else:
        lib.tl_linear_f32(x.data_ptr(), m, k, weight.data_ptr(), n, _ptr(bias), y.data_ptr(),
                          threads)
    return y


def greedy(lib: ctypes.CDLL, logits: torch.Tensor) -> tuple[list[int], list[float]]:
    """Per row of ``logits [R, V]`` fp32: the arg-max (first of ties) and its log-softmax."""
    logits = logits.contiguous()
    rows, vocab = logits.shape
    tokens = torch.empty(rows, dtype=torch.int64)
    log_probs = torch.empty(rows, dtype=torch.float32)
    lib.tl_greedy(logits.data_ptr(), rows, vocab, tokens.data_ptr(), log_probs.data_ptr())
    return tokens.tolist(), log_probs.tolist()


def decode_attention(lib: ctypes.CDLL, q: torch.Tensor, keys: torch.Tensor,
                     values: torch.Tensor, tables: torch.Tensor, contexts: torch.Tensor,
                     softmax_scale: float) -> torch.Tensor:
    """One query per row ``q [B, H, d]`` against one layer's cache planes ``keys``/``values``
    ``[num_blocks, block_size, KV, d]``, through ``tables [B, width]`` int32 block ids, over
    ``contexts [B]`` int32 positions: ``[B, H, d]``."""
    q = q.contiguous()
    b, h, d = q.shape
    out = torch.empty_like(q)
    lib.tl_decode_attention(q.data_ptr(), b, h, keys.shape[2], d, keys.data_ptr(),
                            values.data_ptr(), tables.data_ptr(), tables.shape[1],
                            contexts.data_ptr(), keys.shape[1], softmax_scale, out.data_ptr(),
                            torch.get_num_threads())
    return out


def layer_struct(input_norm: torch.Tensor, post_norm: torch.Tensor, linears: dict) -> LayerC:
    """``linears``: ``{"qkv" | "o" | "gate_up" | "down": (weight, scale or None, bias or None,
    block scale or None)}`` as ``kernel_operands()`` gives them, all of one weight kind
    (``WEIGHT_KINDS``). The tensors must outlive the struct."""
    fields = {"input_norm": input_norm.data_ptr(), "post_norm": post_norm.data_ptr()}
    kinds = {WEIGHT_KINDS[operands[0].dtype] for operands in linears.values()}
    if len(kinds) != 1:
        raise ValueError("layer_struct: mixed weight kinds (fp32, int8, int4) in one layer")
    for name, (weight, scale, bias, block_scale) in linears.items():
        fields.update({f"w_{name}": weight.data_ptr(), f"s_{name}": _ptr(scale),
                       f"b_{name}": _ptr(bias), f"u_{name}": _ptr(block_scale)})
    return LayerC(kind=kinds.pop(), **fields)
