"""Launching one headless Locust run: the command line, built from a frozen config.

``tritonllm loadtest run`` and ``sweep`` use it; the Locust process streams its progress to the
terminal and writes Locust's CSV/HTML plus our report into ``out_dir``. The prompt pool is
built here first (``tritonllm.loadtest.pool``), so no Locust process spends time tokenizing.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tritonllm.defaults import DEFAULT_WORKLOAD, GRPC_PORT, HTTP_PORT, OPENAI_PORT
from tritonllm.loadtest.pool import ensure_pool
from tritonllm.loadtest.shapes import Ramp, Soak, Spike, Step, parse_params
from tritonllm.loadtest.slo import Slo
from tritonllm.loadtest.workloads import parse_spec
from tritonllm.model_source import resolve_model_dir

LOADTEST_DIR = Path(__file__).resolve().parents[2] / "loadtest"
USERS = {  # --user -> the thin locustfile at the repository's top level
    "http": "http_generate.py",
    "http-stream": "http_stream.py",
    "grpc": "grpc_stream.py",
    "engine": "engine_direct.py",
    "openai": "openai_stream.py",
}
SHAPE_CONFIGS = {"ramp": Ramp, "step": Step, "spike": Spike, "soak": Soak}
SHAPES = tuple(SHAPE_CONFIGS)
GRPC_USERS = ("grpc", "engine")


@dataclass(frozen=True)
class LocustRun:
    """One run. ``host`` empty: 127.0.0.1 on Triton's default port for the protocol.
    ``stop_timeout``: seconds in-flight requests get to finish after the run time (they are
    then in the report, so its counts match the server's)."""

    out_dir: str
    user: str = "http-stream"
    host: str = ""
    users: int = 4
    spawn_rate: float = 0.0
    run_time: str = "60s"
    workload: str = DEFAULT_WORKLOAD
    request_rate: float = 0.0
    slo: str = ""
    processes: int = 0
    shape: str = ""
    shape_params: str = ""
    stop_timeout: float = 300.0
    label: str = ""
    model: str = ""
    model_dir: str = ""
    locustfile: str = ""
    extra_args: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.user not in USERS:
            raise ValueError(f"user: must be one of {', '.join(USERS)}, got {self.user!r}")
        if self.shape and self.shape not in SHAPES:
            raise ValueError(f"shape: must be one of {', '.join(SHAPES)}, got {self.shape!r}")
        if self.users < 1:
            raise ValueError(f"users: must be >= 1, got {self.users}")
        if self.processes < 0:
            raise ValueError(f"processes: must be >= 0, got {self.processes}")
        if self.stop_timeout < 0:
            raise ValueError(f"stop_timeout: must be >= 0 s, got {self.stop_timeout}")
        if self.shape:
            parse_params(SHAPE_CONFIGS[self.shape], self.shape_params)
        parse_spec(self.workload)  # fail here, not in every Locust process
        if self.slo:
            Slo.parse(self.slo)

    @property
    def resolved_host(self) -> str:
        if self.host:
            return self.host
        if self.user == "openai":
            return f"http://127.0.0.1:{OPENAI_PORT}"
        return (f"127.0.0.1:{GRPC_PORT}" if self.user in GRPC_USERS
                else f"http://127.0.0.1:{HTTP_PORT}")

    def locustfiles(self) -> str:
        files = [self.locustfile or str(LOADTEST_DIR / USERS[self.user])]
        if self.shape:
            files.append(str(LOADTEST_DIR / f"shape_{self.shape}.py"))
        return ",".join(files)

    def command(self) -> list[str]:
        out = Path(self.out_dir)
        cmd = [sys.executable, "-m", "locust", "-f", self.locustfiles(), "--headless",
               "-H", self.resolved_host, "--csv", str(out / "locust"), "--html",
               str(out / "locust.html"), "--stop-timeout", f"{self.stop_timeout:g}",
               "--workload", self.workload, "--report-dir", str(out)]
        if not self.shape:
            cmd += ["-u", str(self.users), "-r", f"{self.spawn_rate or self.users:g}",
                    "-t", self.run_time]
        if self.processes:  # master <-> workers on loopback only, on a free port
            port = str(free_loopback_port())
            cmd += ["--master-bind-host", "127.0.0.1", "--master-bind-port", port,
                    "--master-port", port]
        cmd += _optional(("--request-rate", self.request_rate), ("--slo", self.slo),
                         ("--processes", self.processes), ("--shape-params", self.shape_params),
                         ("--label", self.label), ("--model", self.model),
                         ("--model-dir", self.model_dir))
        return cmd + list(self.extra_args)


def free_loopback_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _optional(*pairs) -> list[str]:
    args = []
    for flag, value in pairs:
        if value:
            args += [flag, f"{value:g}" if isinstance(value, float) else str(value)]
    return args


def prepare_pool(run: LocustRun) -> Path:
    """Build (or find) the prompt pool the run's processes will read."""
    return ensure_pool(parse_spec(run.workload), resolve_model_dir(run.model_dir or None))


def execute(run: LocustRun) -> int:
    """Run Locust to completion, its output on our terminal; returns its exit code
    (0 ok, 1 request errors, 2 setup/report error, 3 SLO missed)."""
    Path(run.out_dir).mkdir(parents=True, exist_ok=True)
    print(f"[tritonllm] preparing the workload ({run.workload}) ...", file=sys.stderr, flush=True)
    prepare_pool(run)
    print("[tritonllm] " + " ".join(run.command()), file=sys.stderr, flush=True)
    return subprocess.run(run.command()).returncode
