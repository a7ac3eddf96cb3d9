"""Start a real ``tritonserver`` process without Docker, wait until it is ready, stop it cleanly.

The server binary, the Python backend and a backend stub per Python version ship inside the
``nvidia-pytriton`` wheel (Triton 2.51). The Python backend needs the stub of the running
interpreter beside ``libtriton_python.so``, so a backend directory is assembled once in the cache.
The server's child processes (the stubs) run the models in this virtualenv because its ``bin``
comes first on ``PATH``.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tritonllm.model_source import cache_root

DEFAULT_PORTS = {"http": 8000, "grpc": 8001, "metrics": 8002}


class ServerError(RuntimeError):
    """tritonserver could not be started or did not become ready."""


def pytriton_root() -> Path:
    import pytriton

    root = Path(pytriton.__file__).parent / "tritonserver"
    if not (root / "bin" / "tritonserver").is_file():
        raise ServerError(f"no tritonserver binary under {root}; is nvidia-pytriton installed?")
    return root


def backend_dir() -> Path:
    """A backend directory holding the Python backend and this interpreter's stub."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    target = cache_root() / "backends" / f"py{version}"
    python_dir = target / "python"
    if (python_dir / "triton_python_backend_stub").is_file():
        return target
    root = pytriton_root()
    stub = root / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.is_file():
        raise ServerError(f"nvidia-pytriton ships no Python backend stub for Python {version}")
    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(root / "backends" / "python", staging / "python")
    shutil.copy2(stub, staging / "python" / stub.name)
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return target


def server_env() -> dict[str, str]:
    """The environment tritonserver needs: bundled libs, libpython, this venv's bin first."""
    env = dict(os.environ)
    site = pytriton_root().parent.parent
    libs = [str(site / "nvidia_pytriton.libs"), sysconfig.get_config_var("LIBDIR") or ""]
    env["LD_LIBRARY_PATH"] = ":".join([*libs, env.get("LD_LIBRARY_PATH", "")]).rstrip(":")
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass(frozen=True)
class Ports:
    http: int = DEFAULT_PORTS["http"]
    grpc: int = DEFAULT_PORTS["grpc"]
    metrics: int = DEFAULT_PORTS["metrics"]

    @classmethod
    def free(cls) -> "Ports":
        return cls(free_port(), free_port(), free_port())


class TritonServer:
    """A tritonserver process over one model repository; a context manager."""

    def __init__(self, model_repository: str | Path, ports: Ports = Ports(),
                 log_file: str | Path | None = None, log_verbose: int = 0,
                 extra_args: tuple[str, ...] = ()):
        self.model_repository = Path(model_repository)
        self.ports = ports
        self.log_file = Path(log_file) if log_file else None
        self.log_verbose = log_verbose
        self.extra_args = extra_args
        self._proc: subprocess.Popen | None = None
        self._log_handle = None

    @property
    def http_url(self) -> str:
        return f"localhost:{self.ports.http}"

    @property
    def grpc_url(self) -> str:
        return f"localhost:{self.ports.grpc}"

    @property
    def metrics_url(self) -> str:
        return f"http://localhost:{self.ports.metrics}/metrics"

    def command(self) -> list[str]:
        return [
            str(pytriton_root() / "bin" / "tritonserver"),
            f"--model-repository={self.model_repository}",
            f"--backend-directory={backend_dir()}",
            f"--cache-directory={pytriton_root() / 'caches'}",
            f"--http-port={self.ports.http}",
            f"--grpc-port={self.ports.grpc}",
            f"--metrics-port={self.ports.metrics}",
            "--allow-cpu-metrics=true",
            f"--log-verbose={self.log_verbose}",
            *self.extra_args,
        ]

    def start(self, timeout_s: float = 300.0) -> "TritonServer":
        for port in (self.ports.http, self.ports.grpc, self.ports.metrics):
            _check_port_free(port)
        output = subprocess.DEVNULL
        if self.log_file:
            self._log_handle = open(self.log_file, "ab")
            output = self._log_handle
        self._proc = subprocess.Popen(self.command(), env=server_env(), stdout=output,
                                      stderr=subprocess.STDOUT, start_new_session=True)
        try:
            self.wait_ready(timeout_s)
        except BaseException:  # not ready, Ctrl-C or SIGTERM while starting: leave nothing behind
            self.stop()
            raise
        return self

    def wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        url = f"http://localhost:{self.ports.http}/v2/health/ready"
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise ServerError(f"tritonserver exited with status {self._proc.returncode}"
                                  f"{self._log_hint()}")
            if _http_ok(url):
                return
            time.sleep(0.5)
        raise ServerError(f"tritonserver not ready after {timeout_s:.0f} s{self._log_hint()}")

    def stop(self, timeout_s: float = 30.0) -> None:
        """SIGTERM to tritonserver alone (it drains in-flight requests and stops its backend
        stubs itself), then SIGKILL its whole process group if it hangs."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(self._proc.pid, signal.SIGKILL)
                self._proc.wait()
        _kill_group(self._proc.pid)  # stubs left behind by a crashed server
        self._proc = None
        if self._log_handle:
            self._log_handle.close()
            self._log_handle = None

    def wait(self) -> int:
        return self._proc.wait()

    def __enter__(self) -> "TritonServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _log_hint(self) -> str:
        return f"; see {self.log_file}" if self.log_file else ""


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _check_port_free(port: int) -> None:
    with socket.socket() as sock:
        if sock.connect_ex(("127.0.0.1", port)) == 0:
            raise ServerError(f"port {port} is already in use; choose other ports "
                              "(HTTP_PORT / GRPC_PORT / METRICS_PORT, or --http-port ...)")


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass
