"""The CPU deployment: the default (or a given) Llama checkpoint behind a real tritonserver.

``prepare`` renders the model repository for the CPU engine; ``serve`` starts the server and
the OpenAI-compatible frontend in front of it (a child process, :mod:`tritonllm.openai`), prints
the endpoints and waits until Ctrl-C / SIGTERM / SIGHUP, then stops the frontend and the server
(Triton drains in-flight requests for up to the grace period). Repeated signals (GNU make
forwards its SIGTERM to us while ``kill -- -PGID`` sends one too) do not cut the stop short.
If tritonserver dies on its own, ``serve`` prints its status or signal and the last lines of its
log, and returns non-zero. If it can no longer serve while it lives (a backend stub died, or it
keeps answering not-ready: :mod:`tritonllm.serve.watchdog`), ``serve`` prints why, stops it at
once (in-flight requests could never finish: their connections close) and returns
``EXIT_UNHEALTHY``, so a process manager or Kubernetes restarts it.
"""

from __future__ import annotations

import os
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path

from tritonllm.engine import EngineConfig, kernel_build
from tritonllm.engine.threads import thread_budget
from tritonllm.model_source import cache_root, resolve_model_dir
from tritonllm.openai.server import FrontendProcess
from tritonllm.openai.settings import DEFAULT_PORT, FrontendSettings
from tritonllm.repo.render import EnsembleOptions, RepoSettings, render_repository
from tritonllm.serve.launcher import (ADMIN_HEADER, ADMIN_KEY_ENV, DEFAULT_GRACE_PERIOD_S, DEFAULT_HOST,
                                      RESTRICTED_APIS, Ports, LaunchError, TritonServer,
                                      is_loopback, new_admin_key)
from tritonllm.serve.watchdog import EXIT_UNHEALTHY, Watchdog, wait_for_exit_or_crash

STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)
UNHEALTHY_STOP_S = 2  # SIGTERM would wait the grace period for requests that cannot finish


class _StopRequested(BaseException):
    """Raised in the main thread by the first SIGTERM / SIGHUP."""


@dataclass(frozen=True, kw_only=True)
class CpuDeployment(EnsembleOptions):
    """What ``tritonllm serve`` deploys: the ensemble's options (:class:`EnsembleOptions`), the
    CPU engine's config and the checkpoint; ``model=None`` means the default SmolLM2 model."""

    model: str | None = None
    engine: EngineConfig = field(default_factory=EngineConfig)
    repo_dir: Path = field(default_factory=lambda: cache_root() / "model_repository")

    def repo_settings(self, model_dir: Path) -> RepoSettings:
        params = {"model_dir": str(model_dir), **self.engine.to_parameters()}
        return RepoSettings(tokenizer_dir=str(model_dir), max_input_len=self.engine.max_input_len,
                            max_seq_len=self.engine.max_seq_len,
                            cpu_engine_parameters=params, **self.ensemble_options())

    def prepare(self) -> Path:
        """Resolve (or create) the model checkpoint and render the repository; returns it."""
        model_dir = resolve_model_dir(self.model)
        return render_repository(self.repo_settings(model_dir), self.repo_dir)


def serve(deployment: CpuDeployment, ports: Ports, log_file: Path | None = None, *,
          openai_port: int = DEFAULT_PORT, host: str = DEFAULT_HOST,
          grace_period_s: int = DEFAULT_GRACE_PERIOD_S) -> int:
    """Serve until Ctrl-C / SIGTERM (returns 0) or until tritonserver dies (returns its status,
    128 + its signal, or 1). ``host``: the address Triton's three ports and the OpenAI frontend
    bind to. ``openai_port``: the frontend's port (0: no frontend). ``log_file``: tritonserver's
    log (default: one in the tritonllm cache, so a crash can be reported)."""
    repo = deployment.prepare()
    print(f"[tritonllm] model repository: {repo}", file=sys.stderr)
    if not _report_kernels():
        return 1
    threads = thread_budget(deployment.engine.num_threads)
    print(f"[tritonllm] engine threads: {threads.reason}", file=sys.stderr)
    _warn_if_exposed(host)
    server = TritonServer(repo, ports, log_file=log_file or _default_log(ports), host=host,
                          grace_period_s=grace_period_s, admin_key=_admin_key(ports))
    print("[tritonllm] starting tritonserver (loading the model takes a few seconds) ...",
          file=sys.stderr)
    previous = {sig: signal.signal(sig, _request_stop) for sig in STOP_SIGNALS}
    frontend = None
    try:
        server.start()
        frontend = _start_frontend(deployment, ports, openai_port, log_file, host)
        _print_ready(server, frontend)
        return _supervise(server)
    except (KeyboardInterrupt, _StopRequested):
        print(f"[tritonllm] stopping (in-flight requests get up to {grace_period_s} s) ...",
              file=sys.stderr, flush=True)
        return 0
    except LaunchError as exc:
        print(f"[tritonllm] error: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        _ignore_further_signals()
        if frontend is not None:
            frontend.stop()
        server.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _request_stop(signum, _frame) -> None:
    _ignore_further_signals()
    raise _StopRequested(signal.Signals(signum).name)


def _ignore_further_signals() -> None:
    """The stop is bounded by the grace period; a second signal must not abort it half-way."""
    for sig in (*STOP_SIGNALS, signal.SIGINT):
        signal.signal(sig, signal.SIG_IGN)


def _supervise(server: TritonServer) -> int:
    """Wait until tritonserver exits or the watchdog finds it unable to serve."""
    watchdog = Watchdog(server.pid, f"http://{server.http_url}/v2/health/ready", ready=True)
    outcome = wait_for_exit_or_crash(server.process, watchdog)
    if isinstance(outcome, int):
        return _died(server, outcome)
    print(f"[tritonllm] error: {outcome}; stopping tritonserver (exit status {EXIT_UNHEALTHY})",
          file=sys.stderr, flush=True)
    server.stop(timeout_s=UNHEALTHY_STOP_S)
    return EXIT_UNHEALTHY


def _died(server: TritonServer, code: int) -> int:
    print(f"[tritonllm] error: {server.exit_report()}", file=sys.stderr, flush=True)
    return 128 - code if code < 0 else code or 1


def _report_kernels() -> bool:
    """Build the engine's CPU kernels here (the model's stub then loads them from the cache) and
    say which path the engine runs; False when they are required and unavailable."""
    print(f"[tritonllm] CPU kernels: {kernel_build.status().describe()}", file=sys.stderr)
    try:
        kernel_build.load()
    except kernel_build.KernelsUnavailable:
        print(f"[tritonllm] error: {kernel_build.MODE_ENV}=require and the kernels cannot be "
              f"used; set {kernel_build.MODE_ENV}=1 to run torch's kernels instead",
              file=sys.stderr, flush=True)
        return False
    return True


def _warn_if_exposed(host: str) -> None:
    if not is_loopback(host):
        print(f"[tritonllm] WARNING: binding to {host}: Triton 2.51 (this CPU image) has "
              "published vulnerabilities reachable by anyone who can connect "
              "(see SECURITY.md); expose it only on a trusted network", file=sys.stderr)


def _default_log(ports: Ports) -> Path:
    path = cache_root() / "serve" / f"tritonserver-{ports.http}.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    return path


def _admin_key(ports: Ports) -> str:
    """``$TRITONLLM_ADMIN_KEY``, or a new random key written to a file only we can read."""
    key = os.environ.get(ADMIN_KEY_ENV) or new_admin_key()
    path = cache_root() / "serve" / f"admin-key-{ports.http}"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(key + "\n")
    print(f"[tritonllm] Triton's {', '.join(RESTRICTED_APIS)} APIs need the header "
          f"{ADMIN_HEADER}: <the key in {path}> (set ${ADMIN_KEY_ENV} to choose it)",
          file=sys.stderr)
    return key


def _print_ready(server: TritonServer, frontend) -> None:
    print(f"[tritonllm] ready\n  HTTP    http://{server.http_url}  "
          f"(POST /v2/models/ensemble/generate, /generate_stream)\n"
          f"  gRPC    {server.grpc_url}\n  metrics {server.metrics_url}\n"
          f"{_frontend_line(frontend)}  Ctrl-C stops the server", file=sys.stderr, flush=True)


def _start_frontend(deployment: CpuDeployment, ports: Ports, port: int,
                    log_file: Path | None, host: str = DEFAULT_HOST) -> FrontendProcess | None:
    if not port:
        return None
    triton_host = "localhost" if host in ("0.0.0.0", "::") else host
    settings = FrontendSettings(triton_url=f"{triton_host}:{ports.grpc}", host=host, port=port,
                                decoupled=deployment.decoupled,
                                model_name=resolve_model_dir(deployment.model).name,
                                tokenizer=str(resolve_model_dir(deployment.model)))
    log = log_file.with_name(log_file.name + ".openai") if log_file else None
    return FrontendProcess(settings, log_file=log).start()


def _frontend_line(frontend: FrontendProcess | None) -> str:
    if frontend is None:
        return ""
    return (f"  OpenAI  {frontend.url}/v1  (model {frontend.settings.model_name!r}; "
            "/v1/chat/completions, /v1/completions, /health, /metrics)\n")
