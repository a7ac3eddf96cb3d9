"""The model runner: Llama weights, the one KV-cache tensor, and a lean batched forward step.

The engine's torch code is this forward pass and its layers: ``weights.py`` (loading, fusing,
packing), ``linear.py`` (fp32, int8 and int4 linear layers), ``step_inputs.py`` (a batch as the
step's tensors), ``sampler.py`` and ``cpu_kernels.py`` (our C++ kernels' torch-facing calls); the
scheduling layers stay torch-free. Transformers does what it does well here: config parsing
(``AutoConfig``), RoPE frequencies for every ``rope_type`` (``LlamaRotaryEmbedding`` over
``ROPE_INIT_FUNCTIONS``: default, linear, dynamic, llama3, yarn) and checkpoint loading
(safetensors, or ``from_pretrained`` for other formats). The forward is ours, shaped for
inflight batching on CPU:

- fp32 weights by default (greedy output equal to transformers'), or int8 weights per output
  channel (``weights: int8``, :class:`Int8Linear`: ~4x fewer bytes per step), or int4 weights
  with scales per block of 32 values (``weights: int4``, :class:`Int4Linear`: ~7x fewer);
  q/k/v fused into one weight and gate/up into another, so each layer runs 4 matmuls;
- every linear layer runs once over all of the step's tokens flattened to ``[T, hidden]``
  (decode rows and prompt chunks together), so weights are read once per step (a decode step
  is bound by reading the weights: the linear layers use our kernels from :mod:`cpu_kernels`
  for that (AVX-512 or AVX2), on every step, and torch's kernels where ours cannot be built);
- new K/V are scattered into the cache with the step's ``slot_mapping``;
- attention: decode rows read their K/V in place through their block tables (our kernel; or,
  without it, a lone row with consecutive blocks attends to a view of the cache and several
  rows gather whole blocks with one ``index_select`` per layer, padding masked out); each
  prompt chunk separately, causal within the chunk and attending its cached prefix;
- the residual stream is updated in place and SiLU runs in place (fewer allocations per layer).

KV cache: ``[num_layers, 2, num_blocks, block_size, kv_heads, head_dim]`` fp32, zero-filled,
allocated once; block ids come from ``kv_cache.BlockManager``.

Construction seams: ``ModelRunner.from_dir(path, config)`` for a Hugging Face checkpoint
directory (``from_hf_dir``) or a TensorRT-LLM checkpoint (``from_trtllm_checkpoint``: full
precision or W8A16, any TP/PP split), and ``ModelRunner.from_state_dict(hf_config,
state_dict, config)`` for weights already in memory under Hugging Face Llama names.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Mapping

import torch
import torch.nn.functional as F

from tritonllm.engine import cpu_kernels, huge_pages
from tritonllm.engine.config import EngineConfig
from tritonllm.engine.linear import Int4Linear, Int8Linear, Linear, int8_linear_works
from tritonllm.engine.scheduler import ScheduledBatch
from tritonllm.engine.step_inputs import (StepTensors, attention_tables, decode_blocks,
                                          decode_runs, logit_positions, prefill_specs,
                                          rope_tables)
from tritonllm.engine.threads import thread_budget
from tritonllm.engine.weights import (LayerWeights, head_dim, is_trtllm_checkpoint,
                                      load_hf_state_dict, load_weights, pack_in_huge_pages)

log = logging.getLogger(__name__)

SUPPORTED_MODEL_TYPES = ("llama",)

# Steps of up to this many tokens run every layer in one call of our kernels; a longer prompt
# chunk runs op by op, where torch's flash attention attends the chunk's tokens together (the
# fused layer attends each token like a decode row, reading the cached K/V once per token).
FUSED_MAX_ROWS = 32


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class ModelRunner:
    """Owns the weights and the KV cache; ``forward(batch)`` returns the sampled rows' logits.

    Steps of up to ``FUSED_MAX_ROWS`` tokens (decode rows, the steady state of serving, and
    short prompt chunks: a prompt token attends like a decode row whose context ends at it) run
    every decoder layer in one call of our ``tl_decoder_layers``, each layer whole (RMSNorm,
    q/k/v, RoPE, K/V write, attention, o with the residual add, RMSNorm, gate/up, SiLU, down
    with the residual add), the same math as the torch path below without ~30 torch ops per
    layer;
    ``fuse_layers`` False keeps the torch path (the A/B of ``make bench-engine``). Longer steps
    run the layer op by op.

    Memory: with our kernels, the weights are copied in the order a step reads them into one
    region, and the KV cache is allocated, in transparent huge pages (:mod:`huge_pages`: a step
    streams both, and 4 KiB pages cost a TLB miss every 4 KiB); ``huge_pages`` False keeps
    ordinary allocations (the A/B baseline).

    Decode attention: our kernel (:mod:`cpu_kernels`) reads each row's K/V in place through its
    block table. Without it (``self.kernels`` None), torch's SDPA: ``decode_views``: a lone
    decode row whose blocks are consecutive attends to a view of the cache (no gather); False
    gathers always (the A/B baseline of ``make bench-engine``). With several decode rows one
    gathered, batched call measured faster here than one call per row.
    """

    decode_views = True
    fuse_layers = True
    huge_pages = True

    def __init__(self, hf_config, state_dict: Mapping[str, torch.Tensor],
                 config: EngineConfig, weights: str | None = None,
                 int4_per_channel: bool = False) -> None:
        """``weights``: ``fp32``, ``int8`` (:class:`Int8Linear`) or ``int4``
        (:class:`Int4Linear`; ``int4_per_channel``: one scale per output row); None:
        ``config.weights`` (``auto``: fp32)."""
        self._check_model(hf_config, config)
        mode = config.weights if weights is None else weights
        self.weight_mode = "fp32" if mode == "auto" else mode
        self.int8, self.int4_per_channel = self.weight_mode == "int8", int4_per_channel
        if self.int8 and not int8_linear_works():
            raise ValueError("weights: int8 needs our CPU kernels (cpu_kernels: AVX2 or AVX-512, "
                             "a C++ compiler) or fbgemm's dynamic int8 linear; neither works here")
        torch.set_num_threads(thread_budget(config.num_threads).limit)
        self.kernels = cpu_kernels.load()
        self.hf_config = hf_config
        self.config = config
        self.num_layers = hf_config.num_hidden_layers
        self.num_heads = hf_config.num_attention_heads
        self.num_kv_heads = hf_config.num_key_value_heads
        self.head_dim = head_dim(hf_config)
        self.hidden_size = hf_config.hidden_size
        self.vocab_size = hf_config.vocab_size
        self.eps = hf_config.rms_norm_eps
        # int4 keeps lm_head in int8, as llama.cpp's Q4 types keep theirs at 6 bits or more
        # (docs/cpu-engine.md, "int4 weights": what an int4 lm_head costs SmolLM2)
        head = Int8Linear.from_float if self.weight_mode == "int4" else None
        self.weights = load_weights(hf_config, state_dict, self._linear, head)
        in_huge_pages = self.huge_pages and self.kernels is not None
        if in_huge_pages:
            pack_in_huge_pages(self.weights)
        self.cos, self.sin = rope_tables(hf_config, config.max_seq_len)
        shape = (self.num_layers, 2, config.num_blocks, config.tokens_per_block, self.num_kv_heads,
                 self.head_dim)
        if in_huge_pages:
            self.kv_cache = huge_pages.zeros(4 * math.prod(shape)).view(torch.float32).view(shape)
            granted = [huge_pages.huge_bytes(t) for t in (self.weights.final_norm, self.kv_cache)]
            log.info("weights and KV cache: %s MiB in transparent huge pages (THP mode: %s)",
                     " + ".join("?" if b is None else str(b >> 20) for b in granted),
                     huge_pages.thp_mode())
        else:
            self.kv_cache = torch.zeros(shape, dtype=torch.float32)
        self.kernel_layers = self._kernel_layers()

    @classmethod
    def from_hf_dir(cls, path: str | Path, config: EngineConfig) -> "ModelRunner":
        """Load a Hugging Face Llama checkpoint directory (config.json + weights)."""
        from transformers import AutoConfig

        path = Path(path)
        hf_config = AutoConfig.from_pretrained(str(path))
        return cls(hf_config, load_hf_state_dict(path), config)

    @classmethod
    def from_dir(cls, path: str | Path, config: EngineConfig) -> "ModelRunner":
        """A Hugging Face checkpoint directory, or a TensorRT-LLM checkpoint directory
        (``config.json`` with a ``mapping`` + ``rank*.safetensors``, as ``tritonllm build``
        exports it): see :meth:`from_trtllm_checkpoint`."""
        if is_trtllm_checkpoint(Path(path)):
            return cls.from_trtllm_checkpoint(path, config)
        return cls.from_hf_dir(path, config)

    @classmethod
    def from_trtllm_checkpoint(cls, path: str | Path, config: EngineConfig,
                               **hf_config_overrides) -> "ModelRunner":
        """Serve a full-precision, W8A16 or W4A16 TensorRT-LLM Llama checkpoint of any TP/PP
        split.

        The shards are joined back into Hugging Face tensors (``trtllm_checkpoint``). A W8A16
        checkpoint (``tritonllm build`` mode ``int8_wo``) holds 16-bit weights that TensorRT-LLM
        quantizes per output channel when it builds the engine; with ``weights: auto`` this
        runner does the same rounding and serves int8 weights, so the CPU twin computes with the
        numbers the GPU engine does; a W4A16 checkpoint (``int4_wo``) likewise gets int4 weights
        with one scale per output channel. ``hf_config_overrides`` (e.g.
        ``eos_token_id``) go into the ``LlamaConfig``: the checkpoint does not record them.
        """
        from tritonllm.engine import trtllm_checkpoint

        algo = (trtllm_checkpoint.read_config(path).get("quantization") or {}).get("quant_algo")
        hf_config, state = trtllm_checkpoint.load_as_hf(path, **hf_config_overrides)
        if config.weights == "auto" and algo in ("W8A16", "W4A16"):
            # W4A16: TensorRT-LLM's int4 weight-only has one scale per output channel
            return cls(hf_config, state, config, weights="int8" if algo == "W8A16" else "int4",
                       int4_per_channel=True)
        return cls(hf_config, state, config)

    @classmethod
    def from_state_dict(cls, hf_config, state_dict: Mapping[str, torch.Tensor],
                        config: EngineConfig) -> "ModelRunner":
        """Build from a transformers ``LlamaConfig`` and a state dict in Hugging Face Llama names.

        Names: ``model.embed_tokens.weight``, ``model.norm.weight``, optional ``lm_head.weight``
        (absent or ignored with ``tie_word_embeddings``), and per layer ``i``:
        ``model.layers.{i}.input_layernorm.weight``, ``...post_attention_layernorm.weight``,
        ``...self_attn.{q,k,v,o}_proj.weight`` (and ``.bias`` with ``attention_bias``),
        ``...mlp.{gate,up,down}_proj.weight`` (and ``.bias`` with ``mlp_bias``). Shapes as in
        transformers' ``LlamaForCausalLM``; any float dtype (converted to fp32 here). q/k rows
        in Hugging Face's rotate-half order (as ``LlamaForCausalLM`` checkpoints store them).
        """
        return cls(hf_config, state_dict, config)

    @staticmethod
    def _check_model(hf_config, config: EngineConfig) -> None:
        model_type = getattr(hf_config, "model_type", None)
        if model_type not in SUPPORTED_MODEL_TYPES:
            raise ValueError(f"model_type: {model_type!r} is not supported; "
                             f"supported: {SUPPORTED_MODEL_TYPES}")
        act = getattr(hf_config, "hidden_act", "silu")
        if act != "silu":
            raise ValueError(f"hidden_act: {act!r} is not supported; only 'silu'")
        limit = hf_config.max_position_embeddings
        if config.max_seq_len > limit:
            raise ValueError(f"max_seq_len: {config.max_seq_len} exceeds the model's "
                             f"max_position_embeddings ({limit})")

    @property
    def eos_token_ids(self) -> list[int]:
        """The model's end-of-sequence ids from its config (may be several, e.g. Llama 3)."""
        eos = getattr(self.hf_config, "eos_token_id", None)
        if eos is None:
            return []
        return list(eos) if isinstance(eos, (list, tuple)) else [eos]

    @property
    def max_position_embeddings(self) -> int:
        return self.hf_config.max_position_embeddings

    def _linear(self, weight: torch.Tensor, bias: torch.Tensor | None):
        if self.weight_mode == "int4":
            return Int4Linear.from_float(weight, bias, self.int4_per_channel)
        return Int8Linear.from_float(weight, bias) if self.int8 else Linear(weight, bias)

    def sharing_weights(self, config: EngineConfig) -> "ModelRunner":
        """A second runner over the same weights (one copy in memory) with its own KV cache and
        ``config``, for an engine that differs only in settings the forward does not read
        (scheduling, reuse, speculation): an A/B in one process. The cache must match."""
        import copy

        twin = copy.copy(self)
        twin.config = config
        twin.kv_cache = torch.zeros_like(self.kv_cache)
        twin.kernel_layers = twin._kernel_layers()  # it holds the cache's addresses
        return twin

    def _kernel_layers(self) -> "cpu_kernels.DecoderLayers | None":
        """Every layer's weights and K/V cache planes for ``tl_decoder_layers``; None without
        our kernels (or with a linear layer on another backend)."""
        if self.kernels is None:
            return None
        structs = []
        for w in self.weights.layers:
            linears = {"qkv": w.qkv, "o": w.o, "gate_up": w.gate_up, "down": w.down}
            if any(linear.backend != "kernels" for linear in linears.values()):
                return None
            structs.append(cpu_kernels.layer_struct(w.input_norm, w.post_norm, {
                name: linear.kernel_operands() for name, linear in linears.items()}))
        planes = range(self.num_layers)
        return cpu_kernels.DecoderLayers(structs,
                                         [self.kv_cache[i, 0].data_ptr() for i in planes],
                                         [self.kv_cache[i, 1].data_ptr() for i in planes])


    # ---- the step ------------------------------------------------------------------------

    @staticmethod
    def set_threads(count: int) -> None:
        """Run the steps that this thread calls on ``count`` threads (OpenMP's thread count is
        per calling thread: call it from the thread that steps)."""
        if torch.get_num_threads() != count:
            torch.set_num_threads(count)

    @torch.inference_mode()
    def forward(self, batch: ScheduledBatch, all_tokens: bool = False) -> torch.Tensor:
        """Run one step: write the batch's K/V into the cache and return the logits of each row
        with ``sample`` True, in row order: ``[num_sampled_rows, vocab_size]`` fp32 (a
        speculative row gives ``num_logits`` consecutive rows, one per position).
        ``all_tokens``: the logits of every token of the step instead, ``[T, vocab_size]``."""
        step, w = self.prepare(batch), self.weights
        x = w.embedding(step.input_ids)
        if step.fused is not None:
            self.kernel_layers.run(self.kernels, step.fused, x)
        else:
            for index, layer in enumerate(w.layers):
                x = self._decoder_layer(index, layer, x, step)
        last = x if all_tokens else x[step.sample_tokens]
        return w.lm_head(F.rms_norm(last, (self.hidden_size,), w.final_norm, self.eps))

    def prompt_logits(self, token_ids: list[int]) -> torch.Tensor:
        """The next-token logits after every prefix of ``token_ids``, ``[n, vocab_size]``, from
        one prefill (:meth:`prompt_batch`; for scoring text, e.g. perplexity)."""
        return self.forward(self.prompt_batch(token_ids), all_tokens=True)

    def prompt_batch(self, token_ids: list[int]) -> ScheduledBatch:
        """``token_ids`` as one whole prompt in cache blocks ``0..`` (scoring text, timing a
        prefill; never while an engine serves from this runner)."""
        n, size = len(token_ids), self.config.tokens_per_block
        if n > min(self.config.max_tokens_in_paged_kv_cache, self.config.max_seq_len):
            raise ValueError(f"token_ids: {n} tokens exceed the KV cache or max_seq_len")
        return ScheduledBatch(query_lens=[n], context_lens=[n],
                              block_tables=[list(range(-(-n // size)))], sample=[True],
                              input_ids=list(token_ids), positions=list(range(n)),
                              slot_mapping=list(range(n)))

    def prepare(self, batch: ScheduledBatch) -> StepTensors:
        """Turn the scheduler's lists into the step's index tensors."""
        positions = torch.tensor(batch.positions, dtype=torch.long)
        ends = torch.tensor(batch.query_lens, dtype=torch.long).cumsum(0)
        sampled = torch.tensor(batch.sample, dtype=torch.bool)
        tables = contexts = runs = blocks = mask = None
        fuse = (self.kernel_layers is not None and self.fuse_layers
                and 0 < len(batch.input_ids) <= FUSED_MAX_ROWS)
        size = self.config.tokens_per_block
        if self.kernels is not None:
            tables, contexts = attention_tables(batch, every_token=fuse)
        else:
            lone = self.decode_views and batch.num_decodes == 1
            runs = decode_runs(batch, size) if lone else None
            blocks, mask = decode_blocks(batch, size) if runs is None else (None, None)
        step = StepTensors(
            input_ids=torch.tensor(batch.input_ids, dtype=torch.long),
            slot_mapping=torch.tensor(batch.slot_mapping, dtype=torch.long),
            cos=self.cos[positions].unsqueeze(1), sin=self.sin[positions].unsqueeze(1),
            sample_tokens=logit_positions(batch, ends, sampled), num_decodes=batch.num_decodes,
            decode_blocks=blocks, decode_mask=mask, decode_runs=runs,
            decode_tables=tables, decode_contexts=contexts, fused=None,
            prefills=[] if fuse else prefill_specs(batch, ends.tolist(), size),
        )
        if fuse:
            step.fused = cpu_kernels.StepC(
                B=len(batch.input_ids), hidden=self.hidden_size, heads=self.num_heads,
                kv_heads=self.num_kv_heads, head_dim=self.head_dim,
                intermediate=self.hf_config.intermediate_size, eps=self.eps,
                softmax_scale=self.head_dim ** -0.5, cos=step.cos.data_ptr(),
                sin=step.sin.data_ptr(), slots=step.slot_mapping.data_ptr(),
                tables=tables.data_ptr(), width=tables.shape[1],
                block_size=size, contexts=contexts.data_ptr(),
                nthreads=torch.get_num_threads())
        return step

    def _decoder_layer(self, index: int, w: LayerWeights, x: torch.Tensor,
                       step: StepTensors) -> torch.Tensor:
        """One layer; ``x`` is updated in place (the residual stream is this step's own)."""
        q, k, v = self._rope(w.qkv(self._norm(x, w.input_norm)), step)
        self._write_kv(index, k, v, step)
        x += w.o(self._attention(index, q, k, v, step))
        x += w.down(self._silu_mul(w.gate_up(self._norm(x, w.post_norm))))
        return x

    def _norm(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(x, (self.hidden_size,), weight, self.eps)

    @staticmethod
    def _silu_mul(gate_up: torch.Tensor) -> torch.Tensor:
        """``silu(gate) * up`` of the fused ``[T, 2I]`` projection (gate computed in place)."""
        gate, up = gate_up.chunk(2, dim=-1)
        return F.silu(gate, inplace=True).mul_(up)

    def _rope(self, qkv: torch.Tensor, step: StepTensors):
        """``qkv [T, (H+2KV)*d]`` → rotated ``q [T, H, d]``, ``k [T, KV, d]`` and ``v``."""
        t, hq, hk, d = qkv.shape[0], self.num_heads, self.num_kv_heads, self.head_dim
        qk = qkv[:, :(hq + hk) * d].view(t, hq + hk, d)
        qk = qk * step.cos + _rotate_half(qk) * step.sin
        return qk[:, :hq], qk[:, hq:], qkv[:, (hq + hk) * d:].view(t, hk, d)

    def _write_kv(self, index: int, k: torch.Tensor, v: torch.Tensor,
                  step: StepTensors) -> None:
        cache = self.kv_cache[index]  # [2, num_blocks, block_size, KV, d]
        cache[0].view(-1, self.num_kv_heads, self.head_dim).index_copy_(0, step.slot_mapping, k)
        cache[1].view(-1, self.num_kv_heads, self.head_dim).index_copy_(0, step.slot_mapping, v)

    def _attention(self, index: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                   step: StepTensors) -> torch.Tensor:
        """Attention of the step's queries ``q [T, H, d]`` over their contexts: ``[T, H*d]``."""
        t, hq, d = q.shape
        cache = self.kv_cache[index]
        out = torch.empty(t, hq, d, dtype=q.dtype)
        b = step.num_decodes
        if b:
            out[:b] = self._decode_attention(q[:b], cache, step)
        for start, stop, blocks, context, mask in step.prefills:
            if blocks is None:
                keys, values = k[start:stop], v[start:stop]
            else:
                keys, values = (x[0] for x in self._gather(cache, blocks, 1, context))
            out[start:stop] = self._chunk_attention(q[start:stop], keys, values, mask)
        return out.view(t, hq * d)

    def _gather(self, cache: torch.Tensor, blocks: torch.Tensor, rows: int, length: int):
        """K and V of ``blocks`` (``rows`` tables of equal width, flattened), cut to ``length``
        positions: two ``[rows, length, KV, d]`` views. Whole blocks are copied at once."""
        gathered = cache.view(2, cache.shape[1], -1).index_select(1, blocks)
        kv = gathered.view(2, rows, -1, self.num_kv_heads, self.head_dim)[:, :, :length]
        return kv[0], kv[1]

    def _decode_attention(self, q: torch.Tensor, cache: torch.Tensor,
                          step: StepTensors) -> torch.Tensor:
        """One query per row ``q [B, H, d]`` against its cached context: ``[B, H, d]``.

        Rows whose blocks are one run of consecutive block ids (the usual case: the block
        manager hands out and takes back blocks in order) attend to a view of the cache, one
        call per row, with no copy; otherwise all rows' blocks are gathered into one padded,
        masked batch."""
        if step.decode_tables is not None:
            return cpu_kernels.decode_attention(self.kernels, q, cache[0], cache[1],
                                                step.decode_tables, step.decode_contexts,
                                                self.head_dim ** -0.5)
        if step.decode_runs is not None:
            flat = cache.view(2, -1, self.num_kv_heads, self.head_dim)
            return torch.cat([F.scaled_dot_product_attention(
                q[i, :, None][None], flat[0, start:stop].transpose(0, 1)[None],
                flat[1, start:stop].transpose(0, 1)[None], enable_gqa=True)[0, :, 0][None]
                for i, (start, stop) in enumerate(step.decode_runs)])
        b, length = q.shape[0], step.decode_mask.shape[-1]
        keys, values = self._gather(cache, step.decode_blocks, b, length)
        out = F.scaled_dot_product_attention(
            q.unsqueeze(2), keys.transpose(1, 2), values.transpose(1, 2),
            attn_mask=step.decode_mask, enable_gqa=True)
        return out.squeeze(2)

    @staticmethod
    def _chunk_attention(q, keys, values, mask) -> torch.Tensor:
        """One prompt chunk ``q [n, H, d]`` against ``keys/values [C, KV, d]``: ``[n, H, d]``."""
        out = F.scaled_dot_product_attention(
            q.transpose(0, 1)[None], keys.transpose(0, 1)[None], values.transpose(0, 1)[None],
            attn_mask=mask, is_causal=mask is None, enable_gqa=True)
        return out[0].transpose(0, 1)
