"""tritonllm: serve Llama-family models on NVIDIA Triton Inference Server.

Areas (each a subpackage; the ``tritonllm`` command has a subcommand per user task):
``contract`` (the tensor contract, declared once), ``repo`` (config renderer), ``models``
(logic behind each Triton model), ``engine`` (the CPU inflight-batching engine), ``serve``
(a real tritonserver without Docker), ``client``, ``build`` (planner, quantization, TensorRT-LLM
engines), ``loadtest`` (Locust), ``deploy`` (container entrypoint, Kubernetes), ``bench``.
"""

__version__ = "0.1.0"
