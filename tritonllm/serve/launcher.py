"""Start a real ``tritonserver`` process without Docker, wait until it is ready, stop it cleanly.

The server binary, the Python backend and a backend stub per Python version ship inside the
``nvidia-pytriton`` wheel (Triton 2.51). The Python backend needs the stub of the running
interpreter beside ``libtriton_python.so``, so a backend directory is assembled once in the cache.
The server's child processes (the stubs) run the models in this virtualenv because its ``bin``
comes first on ``PATH``.

Process contract: tritonserver runs in its own session (a terminal's Ctrl-C reaches the
launcher, which stops the server in order) and gets SIGTERM from the kernel if the thread that
started it dies (:func:`tritonllm.process.die_with_parent`), so ``kill -9`` of the
launcher never leaves a server behind. On SIGTERM tritonserver drains in-flight requests for up
to ``grace_period_s`` (its ``--exit-timeout-secs``), then exits and stops its backend stubs.

Surface: every port binds to ``host`` (127.0.0.1 by default) and Triton's restricted APIs
(:data:`RESTRICTED_APIS`) answer only requests carrying the header ``ADMIN_HEADER: admin_key``.
"""

from __future__ import annotations

import os
import secrets
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

from tritonllm.defaults import TRITON_PORTS
from tritonllm.model_source import cache_root
from tritonllm.process import die_with_parent, kill_group
from tritonllm.serve.ports import PortInUseError, check_free

DEFAULT_PORTS = TRITON_PORTS
DEFAULT_HOST = "127.0.0.1"
DEFAULT_GRACE_PERIOD_S = 10
KILL_MARGIN_S = 15  # after the grace period, how long tritonserver gets to exit before SIGKILL
# Closed to clients without the admin key: they change server state or map memory.
RESTRICTED_APIS = ("shared-memory", "model-repository", "logging", "trace")
ADMIN_HEADER = "triton-admin-key"  # lower case: gRPC metadata keys must be
ADMIN_KEY_ENV = "TRITONLLM_ADMIN_KEY"  # where deployments take the admin key from
LOG_TAIL_LINES = 20
LOAD_FAILURE = "failed to load"  # tritonserver's log line for a model that did not load


class LaunchError(RuntimeError):
    """tritonserver could not be started, did not become ready, or died."""


def new_admin_key() -> str:
    return secrets.token_urlsafe(24)


def restricted_api_args(admin_key: str) -> list[str]:
    """Triton 2.51+ flags closing :data:`RESTRICTED_APIS` on HTTP and gRPC to requests without
    ``ADMIN_HEADER: admin_key`` (they get HTTP 403 / gRPC UNAVAILABLE)."""
    if not admin_key or any(c in admin_key for c in ",:= "):
        raise ValueError("admin_key: must be non-empty, without ',', ':', '=' or spaces")
    spec = f"{','.join(RESTRICTED_APIS)}:{ADMIN_HEADER}={admin_key}"
    return [f"--http-restricted-api={spec}", f"--grpc-restricted-protocol={spec}"]


def is_loopback(host: str) -> bool:
    return host in ("localhost", "::1") or host.startswith("127.")


def pytriton_root() -> Path:
    import pytriton

    root = Path(pytriton.__file__).parent / "tritonserver"
    if not (root / "bin" / "tritonserver").is_file():
        raise LaunchError(f"no tritonserver binary under {root}; is nvidia-pytriton installed?")
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
        raise LaunchError(f"nvidia-pytriton ships no Python backend stub for Python {version}")
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
    """A tritonserver process over one model repository; a context manager.

    ``host``: the address all three ports bind to. ``grace_period_s``: how long a stop waits
    for in-flight requests (Triton's ``--exit-timeout-secs``); a stop takes at most that plus
    ``KILL_MARGIN_S``. ``admin_key``: the value of ``ADMIN_HEADER`` that opens the restricted
    APIs (default: a new random key, see :attr:`admin_key`)."""

    def __init__(self, model_repository: str | Path, ports: Ports = Ports(),
                 log_file: str | Path | None = None, log_verbose: int = 0,
                 extra_args: tuple[str, ...] = (), *, host: str = DEFAULT_HOST,
                 grace_period_s: int = DEFAULT_GRACE_PERIOD_S, admin_key: str | None = None):
        if grace_period_s < 0:
            raise ValueError(f"grace_period_s: must be >= 0 seconds, got {grace_period_s}")
        self.model_repository = Path(model_repository)
        self.ports = ports
        self.log_file = Path(log_file) if log_file else None
        self.log_verbose = log_verbose
        self.extra_args = extra_args
        self.host = host
        self.grace_period_s = grace_period_s
        self.admin_key = admin_key or new_admin_key()
        self._proc: subprocess.Popen | None = None
        self._log_handle = None
        self.stopping = False

    @property
    def _client_host(self) -> str:
        return "localhost" if self.host in ("0.0.0.0", "::") else self.host

    @property
    def http_url(self) -> str:
        return f"{self._client_host}:{self.ports.http}"

    @property
    def grpc_url(self) -> str:
        return f"{self._client_host}:{self.ports.grpc}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self._client_host}:{self.ports.metrics}/metrics"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def process(self) -> subprocess.Popen | None:
        """The running tritonserver (None before ``start`` and after ``stop``)."""
        return self._proc

    def command(self) -> list[str]:
        return [
            str(pytriton_root() / "bin" / "tritonserver"),
            f"--model-repository={self.model_repository}",
            f"--backend-directory={backend_dir()}",
            f"--cache-directory={pytriton_root() / 'caches'}",
            f"--http-address={self.host}",
            f"--http-port={self.ports.http}",
            f"--grpc-address={self.host}",
            f"--grpc-port={self.ports.grpc}",
            f"--metrics-address={self.host}",
            f"--metrics-port={self.ports.metrics}",
            "--allow-cpu-metrics=true",
            f"--exit-timeout-secs={self.grace_period_s}",
            *restricted_api_args(self.admin_key),
            f"--log-verbose={self.log_verbose}",
            *self.extra_args,
        ]

    def env(self) -> dict[str, str]:
        """The environment the command runs in."""
        return server_env()

    def start(self, timeout_s: float = 300.0) -> "TritonServer":
        """Start and wait until ready. Call it from a thread that outlives the server (the main
        thread): the server gets SIGTERM when that thread ends."""
        for port in (self.ports.http, self.ports.grpc, self.ports.metrics):
            try:
                check_free(port, self.host)
            except PortInUseError as exc:
                raise LaunchError(str(exc)) from None
        output = subprocess.DEVNULL
        if self.log_file:
            self._log_handle = open(self.log_file, "ab")
            output = self._log_handle
        self.stopping = False
        try:
            self._proc = subprocess.Popen(self.command(), env=self.env(), stdout=output,
                                          stderr=subprocess.STDOUT, start_new_session=True,
                                          preexec_fn=die_with_parent(signal.SIGTERM))
        except OSError as exc:  # no such binary, not executable
            if self._log_handle:
                self._log_handle.close()
                self._log_handle = None
            raise LaunchError(f"cannot run {self.command()[0]}: {exc.strerror}") from None
        try:
            self.wait_ready(timeout_s)
        except BaseException:  # not ready, Ctrl-C or SIGTERM while starting: leave nothing behind
            self.stop()
            raise
        return self

    def wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        url = f"http://{self.http_url}/v2/health/ready"
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise LaunchError(self.exit_report())
            if http_ok(url):
                return
            time.sleep(0.5)
        raise LaunchError(f"tritonserver not ready after {timeout_s:.0f} s{self._log_hint()}")

    def stop(self, timeout_s: float | None = None) -> None:
        """SIGTERM to tritonserver alone (it drains in-flight requests for up to the grace
        period and stops its backend stubs itself), then SIGKILL its whole process group if it
        is still running ``timeout_s`` later (default: :attr:`stop_timeout_s`)."""
        if self._proc is None:
            return
        self.stopping = True
        if timeout_s is None:
            timeout_s = self.stop_timeout_s
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(self._proc.pid, signal.SIGKILL)
                self._proc.wait()
        kill_group(self._proc.pid)  # stubs left behind by a crashed server
        self._proc = None
        if self._log_handle:
            self._log_handle.close()
            self._log_handle = None

    @property
    def stop_timeout_s(self) -> float:
        """How long an orderly stop may take before the process group is killed."""
        return self.grace_period_s + KILL_MARGIN_S

    def wait(self) -> int:
        return self._proc.wait()

    def exit_report(self) -> str:
        """Why tritonserver ended (status or signal) and the last lines of its log."""
        code = self._proc.returncode if self._proc else None
        if code is None:
            return "tritonserver is running"
        how = (f"was killed by signal {signal.Signals(-code).name}" if code < 0
               else f"exited with status {code}")
        return f"tritonserver (pid {self._proc.pid}) {how}{self._log_tail()}"

    def _log_tail(self) -> str:
        if not self.log_file:
            return " (no log file: pass --log-file to keep its log)"
        if self._log_handle:
            self._log_handle.flush()
        try:
            lines = self.log_file.read_text(errors="replace").splitlines()
        except OSError:
            return f"; see {self.log_file}"
        tail = lines[-LOG_TAIL_LINES:]
        # Why a model failed to load is logged above the model table that ends the log.
        failures = [line for line in lines[:-LOG_TAIL_LINES] if LOAD_FAILURE in line]
        found = ("; models that failed to load:\n  " + "\n  ".join(failures[-5:])
                 if failures else "")
        return found + f"; last lines of {self.log_file}:\n  " + "\n  ".join(tail)

    def __enter__(self) -> "TritonServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _log_hint(self) -> str:
        return f"; see {self.log_file}" if self.log_file else ""


def http_ok(url: str) -> bool:
    """Whether ``url`` answers 200 within 2 s (False when it cannot be reached)."""
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False

