"""The CPU deployment: the default (or a given) Llama checkpoint behind a real tritonserver.

``prepare`` renders the model repository for the CPU engine; ``serve`` starts the server, prints
the endpoints and waits until Ctrl-C / SIGTERM, then stops it (Triton drains in-flight requests).
"""

from __future__ import annotations

import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path

from tritonllm.engine import EngineConfig
from tritonllm.model_source import cache_root, resolve_model_dir
from tritonllm.models.engine_step import engine_parameters
from tritonllm.repo.render import RepoSettings, render_repository
from tritonllm.serve.launcher import Ports, TritonServer


@dataclass(frozen=True)
class CpuDeployment:
    """What ``tritonllm serve`` deploys; ``model=None`` means the default SmolLM2 model."""

    model: str | None = None
    engine: EngineConfig = field(default_factory=EngineConfig)
    triton_max_batch_size: int = 64
    repo_dir: Path = field(default_factory=lambda: cache_root() / "model_repository")

    def repo_settings(self, model_dir: Path) -> RepoSettings:
        params = {"model_dir": str(model_dir), **engine_parameters(self.engine)}
        return RepoSettings(tokenizer_dir=str(model_dir),
                            max_input_len=self.engine.max_input_len,
                            max_seq_len=self.engine.max_seq_len,
                            triton_max_batch_size=self.triton_max_batch_size,
                            cpu_engine_parameters=params)

    def prepare(self) -> Path:
        """Resolve (or create) the model checkpoint and render the repository; returns it."""
        model_dir = resolve_model_dir(self.model)
        return render_repository(self.repo_settings(model_dir), self.repo_dir)


def serve(deployment: CpuDeployment, ports: Ports, log_file: Path | None = None) -> int:
    repo = deployment.prepare()
    print(f"[tritonllm] model repository: {repo}", file=sys.stderr)
    print("[tritonllm] starting tritonserver (loading the model takes a few seconds) ...",
          file=sys.stderr)
    server = TritonServer(repo, ports, log_file=log_file)
    # SIGTERM (docker stop, kill) takes the same path as Ctrl-C, during start-up too: stop the
    # server, then exit.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    server.start()
    print(f"[tritonllm] ready\n  HTTP    http://localhost:{ports.http}  "
          f"(POST /v2/models/ensemble/generate, /generate_stream)\n"
          f"  gRPC    localhost:{ports.grpc}\n  metrics {server.metrics_url}\n"
          "  Ctrl-C stops the server", file=sys.stderr, flush=True)
    try:
        return server.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        server.stop()
