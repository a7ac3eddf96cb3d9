"""Build pipeline: a Hugging Face Llama checkpoint -> quantized, tensor/pipeline-parallel
TensorRT-LLM checkpoint -> engines -> a filled Triton model repository.

Stages (each a module, each also a ``tritonllm`` subcommand): ``planner`` (memory and rules,
``tritonllm plan``), ``quantize`` (ModelOpt calibration + TensorRT-LLM checkpoint export),
``verify`` (checkpoint config, layout and weights against the profile and the source),
``engine`` (trtllm-build command lines, run on a GPU node; ``manifest`` beside the engines),
``repo_values`` (the model repository from the profile) and ``pipeline`` (``tritonllm build``:
all of them, skipping stages whose output is up to date). Profiles: ``profile``.
"""
