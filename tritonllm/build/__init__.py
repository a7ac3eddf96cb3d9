"""Build pipeline: a Hugging Face Llama checkpoint -> quantized, tensor/pipeline-parallel
TensorRT-LLM checkpoint -> engines -> a filled Triton model repository.

Stages (each also a ``tritonllm`` subcommand), in the order ``pipeline`` (``tritonllm build``)
runs them, skipping stages whose output is up to date: ``planning`` (memory and rules,
``tritonllm plan``; also size guidance and instance counts), ``compression`` (prune, distill,
2:4 sparsify), ``quantization`` (ModelOpt calibration + TensorRT-LLM checkpoint export; the
modes and their accuracy), ``verify`` (checkpoint config, layout and weights against the
profile and the source; ``trtllm_layout`` is what TensorRT-LLM reads), ``engine``
(trtllm-build command lines, run on a GPU node; ``manifest`` beside the engines) and
``repo_values`` (the model repository from the profile). Profiles: ``profile`` and ``source``;
calibration text: ``corpus``.
"""
