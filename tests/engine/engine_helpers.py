"""Helpers for the engine tests: a tiny random Llama, small engine configs, HF greedy.

Torch and transformers are imported inside the functions, so importing this module is cheap.
"""

from __future__ import annotations

import contextlib
import time

TINY_VOCAB = 300


def tiny_llama_config(**overrides):
    """A 2-layer Llama (hidden 64, 4 heads, 2 KV heads: GQA) for fast exact comparisons."""
    from transformers import LlamaConfig

    fields = dict(vocab_size=TINY_VOCAB, hidden_size=64, intermediate_size=128,
                  num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                  max_position_embeddings=256, eos_token_id=2, bos_token_id=1,
                  tie_word_embeddings=False)
    fields.update(overrides)
    return LlamaConfig(**fields)


def tiny_llama(seed: int = 0, **overrides):
    """A random ``LlamaForCausalLM`` in eval mode (fixed seed: same weights every run)."""
    import torch
    from transformers import LlamaForCausalLM

    torch.manual_seed(seed)
    model = LlamaForCausalLM(tiny_llama_config(**overrides)).eval()
    # Larger random weights make the logits spread out, so greedy picks have clear margins.
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "norm" not in name:
                param.normal_(0.0, 0.2)
    return model


def tiny_engine_config(**overrides):
    from tritonllm.engine import EngineConfig

    fields = dict(max_batch_size=4, max_num_tokens=16, max_input_len=64, max_seq_len=128,
                  max_tokens_in_paged_kv_cache=512, tokens_per_block=4, num_threads=1)
    fields.update(overrides)
    return EngineConfig(**fields)


def tiny_runner(model, **overrides):
    """A ``ModelRunner`` over ``model``'s weights with ``tiny_engine_config(**overrides)``."""
    from tritonllm.engine.runner import ModelRunner

    config = tiny_engine_config(**overrides)
    return ModelRunner.from_state_dict(model.config, model.state_dict(), config)


def tiny_engine(model, **overrides):
    """A started ``LLMEngine`` over ``model``'s weights (shut it down when done)."""
    from tritonllm.engine import LLMEngine

    return LLMEngine(tiny_runner(model, **overrides)).start()


def hf_greedy(model, prompt: list[int], max_new_tokens: int, eos: int = 2,
              **generate_kwargs) -> list[int]:
    """Transformers' own greedy continuation of ``prompt``, stopped at and cut before ``eos``."""
    import torch

    with torch.no_grad():
        out = model.generate(torch.tensor([prompt]), max_new_tokens=max_new_tokens,
                             do_sample=False, eos_token_id=eos, pad_token_id=0,
                             **generate_kwargs)
    tokens = out[0, len(prompt):].tolist()
    return tokens[:tokens.index(eos)] if eos in tokens else tokens


def chat_ids(tokenizer, text: str) -> list[int]:
    """``text`` as one user turn of the tokenizer's chat template, ready for the assistant."""
    rendered = tokenizer.apply_chat_template([{"role": "user", "content": text}],
                                             add_generation_prompt=True, tokenize=False)
    return tokenizer(rendered, add_special_tokens=False).input_ids


@contextlib.contextmanager
def started_engines(model_dir, *configs):
    """An ``LLMEngine`` per config over ``model_dir``, started, shut down on exit."""
    from tritonllm.engine import LLMEngine

    engines = [LLMEngine(model_dir, config).start() for config in configs]
    try:
        yield engines
    finally:
        for engine in engines:
            engine.shutdown()


def exact_request(prompt: list[int], max_new_tokens: int, **fields):
    """A request for the generated tokens only, ended by SmolLM2's end token (id 2)."""
    from tritonllm.engine import GenerationRequest

    return GenerationRequest(f"r-{time.monotonic_ns()}", prompt, max_new_tokens, end_id=2,
                             exclude_input_in_output=True, **fields)


def smollm_quality(runner, smollm, tokens: int = 160) -> tuple[float, float]:
    """``runner`` (SmolLM2 with quantized weights) against transformers' fp32 model on the first
    ``tokens`` of the held-out text: (perplexity change in %, top-1 agreement)."""
    import math

    import torch

    from tritonllm.build.corpus import HELDOUT

    model, tokenizer = smollm
    ids = tokenizer(HELDOUT, return_tensors="pt").input_ids[0][:tokens]
    logits = runner.prompt_logits(ids.tolist())[:-1]
    with torch.no_grad():
        reference = model(ids[None]).logits[0, :-1]
    nll = torch.nn.functional.cross_entropy(logits, ids[1:]).item()
    reference_nll = torch.nn.functional.cross_entropy(reference, ids[1:]).item()
    top1 = (logits.argmax(-1) == reference.argmax(-1)).float().mean().item()
    return 100 * (math.exp(nll - reference_nll) - 1), top1
