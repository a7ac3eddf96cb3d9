"""The model runner: Llama weights, the one KV-cache tensor, and a lean batched forward step.

The torch code of the engine lives here, in ``sampler.py`` and in ``cpu_kernels.py`` (our C++
kernels' torch-facing calls); the scheduling layers stay torch-free. Transformers does what it does
well here: config parsing (``AutoConfig``), RoPE frequencies for every ``rope_type``
(``LlamaRotaryEmbedding`` over ``ROPE_INIT_FUNCTIONS``: default, linear, dynamic, llama3, yarn)
and checkpoint loading (safetensors, or ``from_pretrained`` for other formats). The forward is
ours, shaped for inflight batching on CPU:

- fp32 weights by default (greedy output equal to transformers'), or int8 weights per output
  channel (``weights: int8``, :class:`Int8Linear`: ~4x fewer bytes per step);
  q/k/v fused into one weight and gate/up into another, so each layer runs 4 matmuls;
- every linear layer runs once over all of the step's tokens flattened to ``[T, hidden]``
  (decode rows and prompt chunks together), so weights are read once per step (a decode step
  is bound by reading the weights: ``Linear`` and ``Int8Linear`` use our AVX2 kernels from
  :mod:`cpu_kernels` for that, oneDNN for long prompt chunks, torch's kernels where ours
  cannot be built);
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
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import torch
import torch.nn.functional as F

from tritonllm.engine import cpu_kernels, huge_pages
from tritonllm.engine.config import EngineConfig
from tritonllm.engine.linear import KERNEL_MAX_ROWS, Int8Linear, Linear, int8_linear_works
from tritonllm.engine.scheduler import ScheduledBatch
from tritonllm.engine.threads import thread_budget

log = logging.getLogger(__name__)

SUPPORTED_MODEL_TYPES = ("llama",)


@dataclass
class LayerWeights:
    """One decoder layer, fused: ``qkv`` ``[hidden] → [(H + 2*KV) * d]``, ``o``
    ``[H*d] → [hidden]``, ``gate_up`` ``[hidden] → [2*I]``, ``down`` ``[I] → [hidden]``;
    RMSNorm weights ``[hidden]``."""

    input_norm: torch.Tensor
    qkv: Linear
    o: Linear
    post_norm: torch.Tensor
    gate_up: Linear
    down: Linear


@dataclass
class StepTensors:
    """A ``ScheduledBatch`` as tensors, built once per step and shared by all layers.

    ``cos``/``sin``: ``[T, 1, d]``. Decode rows are the batch's first ``num_decodes`` rows, one
    token each (tokens ``0..B-1``): ``decode_blocks`` holds their block tables padded to the
    longest, flattened ``[B * nblk]``, and ``decode_mask`` ``[B, 1, 1, nblk * block_size]``
    (True = a real context position). ``decode_runs``: when every decode row's blocks are
    consecutive ids, each row's ``(first slot, last slot + 1)`` in the flat cache (then the
    tables are not built); else None. ``prefills``: per other row ``(first_token, stop_token,
    blocks [nblk] or None when the chunk is the whole context, context_len, mask [n, context]
    or None for plain causal)``. With our kernels (``decode_views`` is then moot) the decode
    rows' tables go to the attention kernel as they are: ``decode_tables`` ``[B, nblk]`` int32
    (padded with block 0, never read past ``decode_contexts [B]`` int32), and neither runs nor
    gathered blocks are built. ``fused``: the step as ``tl_decoder_layers`` takes it (pointers
    into this object's tensors), when the runner runs whole layers in our kernel; the tables
    and contexts then have one row per token of the step, and ``prefills`` is empty.
    """

    input_ids: torch.Tensor
    slot_mapping: torch.Tensor
    cos: torch.Tensor
    sin: torch.Tensor
    sample_tokens: torch.Tensor
    num_decodes: int
    decode_blocks: torch.Tensor | None
    decode_mask: torch.Tensor | None
    decode_runs: list[tuple[int, int]] | None
    decode_tables: torch.Tensor | None
    decode_contexts: torch.Tensor | None
    fused: "cpu_kernels.StepC | None"
    prefills: list[tuple[int, int, torch.Tensor | None, int, torch.Tensor | None]]


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def is_trtllm_checkpoint(path: Path) -> bool:
    """A TensorRT-LLM checkpoint dir: ``config.json`` with ``mapping`` and ``rank0`` weights."""
    import json

    config = path / "config.json"
    return ((path / "rank0.safetensors").is_file() and config.is_file()
            and "mapping" in json.loads(config.read_text()))


def load_hf_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """All tensors of a Hugging Face checkpoint directory, under their checkpoint names."""
    files = sorted(path.glob("*.safetensors"))
    if files:
        from safetensors.torch import load_file

        state: dict[str, torch.Tensor] = {}
        for file in files:
            state.update(load_file(str(file)))
        return state
    from transformers import AutoModelForCausalLM  # other formats: let transformers read them

    model = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32)
    return model.state_dict()


class ModelRunner:
    """Owns the weights and the KV cache; ``forward(batch)`` returns the sampled rows' logits.

    Steps of up to ``KERNEL_MAX_ROWS`` tokens (decode rows, the steady state of serving, and
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
                 config: EngineConfig, int8: bool | None = None) -> None:
        """``int8``: int8 weights (:class:`Int8Linear`); None: ``config.weights == "int8"``."""
        self._check_model(hf_config, config)
        self.int8 = config.weights == "int8" if int8 is None else int8
        if self.int8 and not int8_linear_works():
            raise ValueError("weights: int8 needs our CPU kernels (cpu_kernels: AVX2, a C++ "
                             "compiler) or fbgemm's dynamic int8 linear; neither works here")
        torch.set_num_threads(thread_budget(config.num_threads).limit)
        self.kernels = cpu_kernels.load()
        self.hf_config = hf_config
        self.config = config
        self.num_layers = hf_config.num_hidden_layers
        self.num_heads = hf_config.num_attention_heads
        self.num_kv_heads = hf_config.num_key_value_heads
        self.head_dim = getattr(hf_config, "head_dim", None) or (
            hf_config.hidden_size // self.num_heads)
        self.hidden_size = hf_config.hidden_size
        self.vocab_size = hf_config.vocab_size
        self.eps = hf_config.rms_norm_eps
        self._load_weights(state_dict)
        in_huge_pages = self.huge_pages and self.kernels is not None
        if in_huge_pages:
            self._pack_weights()
        self.cos, self.sin = self._rope_tables(hf_config, config.max_seq_len)
        shape = (self.num_layers, 2, config.num_blocks, config.tokens_per_block, self.num_kv_heads,
                 self.head_dim)
        if in_huge_pages:
            self.kv_cache = huge_pages.zeros(4 * math.prod(shape)).view(torch.float32).view(shape)
            granted = [huge_pages.huge_bytes(t) for t in (self.final_norm, self.kv_cache)]
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
        """Serve a full-precision or W8A16 TensorRT-LLM Llama checkpoint of any TP/PP split.

        The shards are joined back into Hugging Face tensors (``trtllm_checkpoint``). A W8A16
        checkpoint (``tritonllm build`` mode ``int8_wo``) holds 16-bit weights that TensorRT-LLM
        quantizes per output channel when it builds the engine; with ``weights: auto`` (or
        ``int8``) this runner does the same rounding and serves int8 weights, so the CPU twin
        computes with the numbers the GPU engine does. ``hf_config_overrides`` (e.g.
        ``eos_token_id``) go into the ``LlamaConfig``: the checkpoint does not record them.
        """
        from tritonllm.engine import trtllm_checkpoint

        algo = (trtllm_checkpoint.read_config(path).get("quantization") or {}).get("quant_algo")
        hf_config, state = trtllm_checkpoint.load_as_hf(path, **hf_config_overrides)
        int8 = config.weights == "int8" or (config.weights == "auto" and algo == "W8A16")
        return cls(hf_config, state, config, int8=int8)

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

    # ---- weights -------------------------------------------------------------------------

    def _load_weights(self, state: Mapping[str, torch.Tensor]) -> None:
        def get(name: str, optional: bool = False) -> torch.Tensor | None:
            if name not in state:
                if optional:
                    return None
                raise ValueError(f"state_dict: missing tensor {name!r}")
            return state[name].detach().to(torch.float32).contiguous()

        self.embed = get("model.embed_tokens.weight")
        self.final_norm = get("model.norm.weight")
        tied = getattr(self.hf_config, "tie_word_embeddings", False)
        head = None if tied else get("lm_head.weight", optional=True)
        self.lm_head = self._linear(self.embed if head is None else head, None)
        self.layers = [self._layer_weights(get, i) for i in range(self.num_layers)]
        self._check_shapes()

    def _pack_weights(self) -> None:
        """Every weight tensor, copied in the order a step reads it (layer by layer, then the
        final norm and ``lm_head``) into one :mod:`huge_pages` region; a tensor held twice (a
        tied ``lm_head``) is copied once. Only plain tensors, which our kernels read: nothing is
        packed when a linear layer runs on oneDNN's or fbgemm's packed weights."""
        def linear(layer) -> list[tuple[object, str]]:
            return [(layer, name) for name in ("weight", "qweight", "scale", "bias")
                    if isinstance(getattr(layer, name, None), torch.Tensor)]

        linears = [self.lm_head] + [getattr(w, n) for w in self.layers
                                    for n in ("qkv", "o", "gate_up", "down")]
        if any(layer.backend != "kernels" for layer in linears):
            return
        slots = []
        for w in self.layers:
            slots += [(w, "input_norm"), *linear(w.qkv), *linear(w.o), (w, "post_norm"),
                      *linear(w.gate_up), *linear(w.down)]
        slots += [(self, "final_norm"), *linear(self.lm_head), (self, "embed")]
        unique: dict[int, torch.Tensor] = {}
        for holder, name in slots:
            tensor = getattr(holder, name)
            unique.setdefault(id(tensor), tensor.contiguous())
        copies = dict(zip(unique, huge_pages.pack(list(unique.values()))))
        for holder, name in slots:
            setattr(holder, name, copies[id(getattr(holder, name))])

    def _kernel_layers(self) -> "cpu_kernels.DecoderLayers | None":
        """Every layer's weights and K/V cache planes for ``tl_decoder_layers``; None without
        our kernels (or with a linear layer on another backend)."""
        if self.kernels is None:
            return None
        structs = []
        for w in self.layers:
            linears = {"qkv": w.qkv, "o": w.o, "gate_up": w.gate_up, "down": w.down}
            if any(linear.backend != "kernels" for linear in linears.values()):
                return None
            structs.append(cpu_kernels.layer_struct(w.input_norm, w.post_norm, {
                name: linear.kernel_operands() for name, linear in linears.items()}))
        planes = range(self.num_layers)
        return cpu_kernels.DecoderLayers(structs,
                                         [self.kv_cache[i, 0].data_ptr() for i in planes],
                                         [self.kv_cache[i, 1].data_ptr() for i in planes])

    def _linear(self, weight: torch.Tensor, bias: torch.Tensor | None):
        return Int8Linear.from_float(weight, bias) if self.int8 else Linear(weight, bias)

    def _layer_weights(self, get, i: int) -> LayerWeights:
        p = f"model.layers.{i}."

        def fused(names: list[str], suffix: str) -> torch.Tensor | None:
            parts = [get(p + n + suffix, optional=suffix == ".bias") for n in names]
            if any(t is None for t in parts):
                return None
            return torch.cat(parts, dim=0).contiguous()

        def linear(names: list[str]):
            return self._linear(fused(names, ".weight"), fused(names, ".bias"))

        return LayerWeights(
            input_norm=get(p + "input_layernorm.weight"),
            qkv=linear(["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"]),
            o=linear(["self_attn.o_proj"]),
            post_norm=get(p + "post_attention_layernorm.weight"),
            gate_up=linear(["mlp.gate_proj", "mlp.up_proj"]),
            down=linear(["mlp.down_proj"]),
        )

    def _check_shapes(self) -> None:
        h, d = self.hidden_size, self.head_dim
        qkv_rows = (self.num_heads + 2 * self.num_kv_heads) * d
        inter = self.hf_config.intermediate_size
        if tuple(self.embed.shape) != (self.vocab_size, h):
            raise ValueError(f"state_dict: model.embed_tokens.weight has shape "
                             f"{tuple(self.embed.shape)}, the config implies {(self.vocab_size, h)}")
        expected = [("lm_head", self.lm_head, (self.vocab_size, h))]
        for i, layer in enumerate(self.layers):
            expected += [(f"layers.{i}.q/k/v_proj (fused)", layer.qkv, (qkv_rows, h)),
                         (f"layers.{i}.o_proj", layer.o, (h, self.num_heads * d)),
                         (f"layers.{i}.gate/up_proj (fused)", layer.gate_up, (2 * inter, h)),
                         (f"layers.{i}.down_proj", layer.down, (h, inter))]
        for name, linear, shape in expected:
            actual = (linear.out_features, linear.in_features)
            if actual != shape:
                raise ValueError(f"state_dict: {name} has shape {actual}, "
                                 f"the config implies {shape}")

    @staticmethod
    def _rope_tables(hf_config, max_positions: int) -> tuple[torch.Tensor, torch.Tensor]:
        """cos/sin ``[max_positions, head_dim]`` from transformers' rotary embedding.

        Computed once for positions ``0..max_seq_len-1``; ``max_seq_len`` never exceeds
        ``max_position_embeddings``, where transformers' dynamic scaling does not kick in.
        """
        from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

        rotary = LlamaRotaryEmbedding(hf_config)
        positions = torch.arange(max_positions)[None]
        with torch.no_grad():
            cos, sin = rotary(torch.zeros(1, dtype=torch.float32), positions)
        return cos[0].contiguous(), sin[0].contiguous()

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
        with ``sample`` True, in row order: ``[num_sampled_rows, vocab_size]`` fp32.
        ``all_tokens``: the logits of every token of the step instead, ``[T, vocab_size]``."""
        step = self.prepare(batch)
        x = self.embed[step.input_ids]
        if step.fused is not None:
            self.kernel_layers.run(self.kernels, step.fused, x)
        else:
            for index, layer in enumerate(self.layers):
                x = self._decoder_layer(index, layer, x, step)
        last = x if all_tokens else x[step.sample_tokens]
        return self.lm_head(F.rms_norm(last, (self.hidden_size,), self.final_norm, self.eps))

    def prompt_logits(self, token_ids: list[int]) -> torch.Tensor:
        """The next-token logits after every prefix of ``token_ids``, ``[n, vocab_size]``, from
        one prefill in cache blocks ``0..`` (for scoring text, e.g. perplexity; never while an
        engine serves from this runner)."""
        n, size = len(token_ids), self.config.tokens_per_block
        if n > min(self.config.max_tokens_in_paged_kv_cache, self.config.max_seq_len):
            raise ValueError(f"token_ids: {n} tokens exceed the KV cache or max_seq_len")
        batch = ScheduledBatch(query_lens=[n], context_lens=[n],
                               block_tables=[list(range(-(-n // size)))], sample=[True],
                               input_ids=list(token_ids), positions=list(range(n)),
                               slot_mapping=list(range(n)))
        return self.forward(batch, all_tokens=True)

    def prepare(self, batch: ScheduledBatch) -> StepTensors:
        """Turn the scheduler's lists into the step's index tensors."""
        positions = torch.tensor(batch.positions, dtype=torch.long)
        ends = torch.tensor(batch.query_lens, dtype=torch.long).cumsum(0)
        sampled = torch.tensor(batch.sample, dtype=torch.bool)
        tables = contexts = runs = blocks = mask = None
        fuse = (self.kernel_layers is not None and self.fuse_layers
                and 0 < len(batch.input_ids) <= KERNEL_MAX_ROWS)
        if self.kernels is not None:
            tables, contexts = self._attention_tables(batch, every_token=fuse)
        else:
            lone = self.decode_views and batch.num_decodes == 1
            runs = self._decode_runs(batch) if lone else None
            blocks, mask = self._decode_blocks(batch) if runs is None else (None, None)
        step = StepTensors(
            input_ids=torch.tensor(batch.input_ids, dtype=torch.long),
            slot_mapping=torch.tensor(batch.slot_mapping, dtype=torch.long),
            cos=self.cos[positions].unsqueeze(1), sin=self.sin[positions].unsqueeze(1),
            sample_tokens=(ends - 1)[sampled], num_decodes=batch.num_decodes,
            decode_blocks=blocks, decode_mask=mask, decode_runs=runs,
            decode_tables=tables, decode_contexts=contexts, fused=None,
            prefills=[] if fuse else self._prefill_specs(batch, ends.tolist()),
        )
        if fuse:
            step.fused = cpu_kernels.StepC(
                B=len(batch.input_ids), hidden=self.hidden_size, heads=self.num_heads,
                kv_heads=self.num_kv_heads, head_dim=self.head_dim,
                intermediate=self.hf_config.intermediate_size, eps=self.eps,
                softmax_scale=self.head_dim ** -0.5, cos=step.cos.data_ptr(),
                sin=step.sin.data_ptr(), slots=step.slot_mapping.data_ptr(),
                tables=tables.data_ptr(), width=tables.shape[1],
                block_size=self.config.tokens_per_block, contexts=contexts.data_ptr(),
                nthreads=torch.get_num_threads())
        return step

    @staticmethod
    def _attention_tables(batch: ScheduledBatch, every_token: bool = False):
        """Block tables ``[R, nblk]`` int32 (padded with block 0) and contexts ``[R]`` int32 for
        our attention kernel: R = the decode rows, or with ``every_token`` every token of the
        step, a prompt chunk's token at position p attending to positions 0..p."""
        rows = len(batch.query_lens) if every_token else batch.num_decodes
        tables, contexts = [], []
        for i in range(rows):
            n, context = batch.query_lens[i], batch.context_lens[i]
            tables += [batch.block_tables[i]] * n
            contexts += range(context - n + 1, context + 1)
        if not tables:
            return None, None
        width = max(len(table) for table in tables)
        padded = [table + [0] * (width - len(table)) for table in tables]
        return (torch.tensor(padded, dtype=torch.int32),
                torch.tensor(contexts, dtype=torch.int32))

    def _decode_runs(self, batch: ScheduledBatch) -> list[tuple[int, int]] | None:
        """Each decode row's context as one slot range, when its blocks are consecutive."""
        size, runs = self.config.tokens_per_block, []
        for table, context in zip(batch.block_tables[:batch.num_decodes], batch.context_lens):
            first, count = table[0], -(-context // size)
            if table[count - 1] - first != count - 1 or table[:count] != list(
                    range(first, first + count)):
                return None
            runs.append((first * size, first * size + context))
        return runs

    def _decode_blocks(self, batch: ScheduledBatch):
        """Padded block tables ``[B * nblk]`` and context mask ``[B, 1, 1, nblk * bs]``."""
        count = batch.num_decodes
        if count == 0:
            return None, None
        size = self.config.tokens_per_block
        contexts = batch.context_lens[:count]
        width = -(-max(contexts) // size)
        tables = [table[:width] + [0] * (width - len(table[:width]))  # padding: masked out
                  for table in batch.block_tables[:count]]
        positions = torch.arange(width * size)
        mask = positions[None, :] < torch.tensor(contexts, dtype=torch.long)[:, None]
        return torch.tensor(tables, dtype=torch.long).view(-1), mask[:, None, None, :]

    def _prefill_specs(self, batch: ScheduledBatch, ends: list[int]):
        """Per row after the decodes: token range, cached-context blocks and causal mask."""
        specs = []
        size = self.config.tokens_per_block
        for i in range(batch.num_decodes, len(batch.query_lens)):
            n, context = batch.query_lens[i], batch.context_lens[i]
            if context == n:  # the chunk is the whole context: plain causal attention
                specs.append((ends[i] - n, ends[i], None, context, None))
                continue
            blocks = torch.tensor(batch.block_tables[i][:-(-context // size)], dtype=torch.long)
            key_pos = torch.arange(context)
            query_pos = torch.arange(context - n, context)
            specs.append((ends[i] - n, ends[i], blocks, context,
                          key_pos[None, :] <= query_pos[:, None]))
        return specs

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
