"""The GPU stack this project targets: one home for its versions.

The GPU image is NGC's ``tritonserver:<release>-trtllm-python-py3``. NVIDIA's Triton compatibility
matrix (container ``trtllm-python-py3``) lists release 25.12 with TensorRT-LLM 1.1.0, TensorRT
10.13.3.9, torch 2.9.0a0 (nv25.10), CUDA 13.0.2 and Python 3.12.3 (26.01 and 26.02 carry the same
TensorRT-LLM). So the engine build (``trtllm-build``), the ``tensorrtllm`` backend, the Python
pin set (requirements/gpu-image.txt) and the engine manifest all target 1.1.0: it is the release
an NGC image really ships, and the 1.x line is the last that builds engines. Later releases reach
users only by building TensorRT-LLM from source on ``tritonserver:<release>-py3-min``, which we do
not do: an image we cannot build and check is not one we can promise.

Tests check that the Dockerfile's ``TRITON_IMAGE`` and every version the docs and code state agree
with these constants (tests/test_gpu_stack.py).
"""

from __future__ import annotations

TENSORRT_LLM_VERSION = "1.1.0"
TRITON_RELEASE = "25.12"  # NGC release: Triton server 2.64
TRITON_GPU_IMAGE = f"nvcr.io/nvidia/tritonserver:{TRITON_RELEASE}-trtllm-python-py3"
TENSORRT_VERSION = "10.13.3.9"
