"""The CPU deployment: the default (or a given) Llama checkpoint behind a real tritonserver.

``prepare`` renders the model repository for the CPU engine; ``serve`` starts the server and
the OpenAI-compatible frontend in front of it (a child process, :mod:`tritonllm.openai`), prints
the endpoints and waits until Ctrl-C / SIGTERM, then stops the frontend and the server (Triton
drains in-flight requests).
"""

from __future__ import annotations

import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path

from tritonllm.engine import EngineConfig
from tritonllm.model_source import cache_root, resolve_model_dir
from tritonllm.openai.server import FrontendProcess
from tritonllm.openai.settings import DEFAULT_PORT, FrontendSettings
from tritonllm.repo.render import RepoSettings, render_repository
from tritonllm.serve.launcher import Ports, TritonServer


@dataclass(frozen=True)
class CpuDeployment:
    """What ``tritonllm serve`` deploys; ``model=None`` means the default SmolLM2 model.
    ``decoupled``: tensorrtllm_backend's ``decoupled_mode`` (see :class:`RepoSettings`)."""

    model: str | None = None
    engine: EngineConfig = field(default_factory=EngineConfig)
    triton_max_batch_size: int = 64
    decoupled: bool = True
    repo_dir: Path = field(default_factory=lambda: cache_root() / "model_repository")

    def repo_settings(self, model_dir: Path) -> RepoSettings:
        params = {"model_dir": str(model_dir), **self.engine.to_parameters()}
        return RepoSettings(tokenizer_dir=str(model_dir),
                            max_input_len=self.engine.max_input_len,
                            max_seq_len=self.engine.max_seq_len,
                            triton_max_batch_size=self.triton_max_batch_size,
                            decoupled=self.decoupled, cpu_engine_parameters=params)

    def prepare(self) -> Path:
        """Resolve (or create) the model checkpoint and render the repository; returns it."""
        model_dir = resolve_model_dir(self.model)
        return render_repository(self.repo_settings(model_dir), self.repo_dir)


def serve(deployment: CpuDeployment, ports: Ports, log_file: Path | None = None, *,
          openai_port: int = DEFAULT_PORT) -> int:
    """Serve until Ctrl-C / SIGTERM or until tritonserver exits. ``openai_port``: where the
    OpenAI frontend listens, on all interfaces as Triton does (0: no frontend)."""
    repo = deployment.prepare()
    print(f"[tritonllm] model repository: {repo}", file=sys.stderr)
    print("[tritonllm] starting tritonserver (loading the model takes a few seconds) ...",
          file=sys.stderr)
    server = TritonServer(repo, ports, log_file=log_file)
    # SIGTERM (docker stop, kill) takes the same path as Ctrl-C, during start-up too: stop the
    # server, then exit.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    frontend = None
    try:
        server.start()
        frontend = _start_frontend(deployment, ports, openai_port, log_file)
        print(f"[tritonllm] ready\n  HTTP    http://localhost:{ports.http}  "
              f"(POST /v2/models/ensemble/generate, /generate_stream)\n"
              f"  gRPC    localhost:{ports.grpc}\n  metrics {server.metrics_url}\n"
              f"{_frontend_line(frontend)}  Ctrl-C stops the server", file=sys.stderr,
              flush=True)
        return server.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        if frontend is not None:
            frontend.stop()
        server.stop()


def _start_frontend(deployment: CpuDeployment, ports: Ports, port: int,
                    log_file: Path | None) -> FrontendProcess | None:
    if not port:
        return None
    settings = FrontendSettings(triton_url=f"localhost:{ports.grpc}", port=port,
                                decoupled=deployment.decoupled,
                                model_name=resolve_model_dir(deployment.model).name)
    log = log_file.with_name(log_file.name + ".openai") if log_file else None
    return FrontendProcess(settings, log_file=log).start()


def _frontend_line(frontend: FrontendProcess | None) -> str:
    if frontend is None:
        return ""
    return (f"  OpenAI  {frontend.url}/v1  (model {frontend.settings.model_name!r}; "
            "/v1/chat/completions, /v1/completions, /health, /metrics)\n")
