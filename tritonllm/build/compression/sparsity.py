"""2:4 structured sparsity of the decoder's linear layers with ModelOpt (``modelopt.torch.sparsity``).

In every group of four consecutive weights along a row's input dimension, two become zero: the
pattern NVIDIA's sparse tensor cores run at up to twice the dense GEMM rate, which TensorRT-LLM
uses when the engine is built with ``--weight_sparsity`` (tritonllm.build.engine). Modes:
``sparsegpt`` (zeros chosen and the remaining weights updated with a Hessian built from
calibration activations; better quality) and ``sparse_magnitude`` (keep the two largest of each
four; no data). ModelOpt leaves ``lm_head`` dense. After ``mts.export`` the masks are folded
into the weights: the result is a plain dense-format checkpoint that happens to hold 2:4 zeros.
The CPU twin's dense matmuls gain no speed from it; the GPU engine does.
"""

from __future__ import annotations

import torch

PATTERN = "2:4"


def sparsify(model, method: str, windows: list[torch.Tensor]):
    """``model`` with 2:4 zeros in its decoder linear weights (in place; returned)."""
    import modelopt.torch.sparsity as mts

    def forward_loop(m) -> None:
        with torch.no_grad():
            for ids in windows:
                m(ids, use_cache=False)

    config = {"forward_loop": forward_loop} if method == "sparsegpt" else {}
    result = mts.sparsify(model, method, config=config)
    model = result[0] if isinstance(result, tuple) else result  # 0.37 vs 0.47 return types
    model = mts.export(model)
    if model.config.tie_word_embeddings:  # export leaves lm_head a copy of the embedding
        model.tie_weights()
    return model


def is_two_four(weight: torch.Tensor) -> bool:
    """True when every group of four along the last dimension holds at most two non-zeros."""
    groups = weight.reshape(-1, 4)
    return bool(((groups != 0).sum(-1) <= 2).all())


def decoder_linear_weights(model) -> dict[str, torch.Tensor]:
    return {name: module.weight for name, module in model.named_modules()
            if isinstance(module, torch.nn.Linear) and ".layers." in name}
