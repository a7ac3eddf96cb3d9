"""A local Prometheus (the ``prometheus`` binary, e.g. Debian's package) that scrapes a running
server's ``/metrics`` endpoints, and its HTTP query API: how the dashboard's queries are
evaluated for the PNG and checked by the tests, exactly as Grafana's Prometheus would.

    with Prometheus(["http://127.0.0.1:8002/metrics"], scrape_interval_s=1) as prom:
        ...  # load runs
        series = prom.query_range("sum(tritonllm_num_requests_running)", start, end, step=1)
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

from tritonllm.process import kill_group

BINARY_ENV = "TRITONLLM_PROMETHEUS"  # path of the binary when it is not on PATH
READY_TIMEOUT_S = 30.0

Series = dict[str, list[tuple[float, float]]]  # legend -> [(unix time, value)]


class PrometheusUnavailable(RuntimeError):
    """No ``prometheus`` binary: install it (``apt-get install prometheus``) or name it."""


def binary() -> str:
    path = os.environ.get(BINARY_ENV) or shutil.which("prometheus")
    if not path:
        raise PrometheusUnavailable(
            f"prometheus: not found on PATH (install it, e.g. `apt-get install prometheus`, or "
            f"set {BINARY_ENV})")
    return path


def scrape_config(urls: list[str], interval_s: float) -> dict:
    """One job per ``/metrics`` URL (Prometheus' JSON-compatible YAML)."""
    jobs = []
    for i, url in enumerate(urls):
        parts = urllib.parse.urlsplit(url if "://" in url else f"http://{url}")
        jobs.append({"job_name": f"target{i}", "metrics_path": parts.path or "/metrics",
                     "scheme": parts.scheme, "static_configs": [{"targets": [parts.netloc]}]})
    interval = f"{max(1, round(interval_s * 1000))}ms"
    return {"global": {"scrape_interval": interval, "evaluation_interval": interval},
            "scrape_configs": jobs}


class Prometheus:
    """A Prometheus process on a free local port, its data in a temporary directory; use as a
    context manager. ``url``: its HTTP API."""

    def __init__(self, metrics_urls: list[str], scrape_interval_s: float = 1.0) -> None:
        from tritonllm.serve.launcher import free_port

        self.scrape_interval_s = scrape_interval_s
        self._dir = Path(tempfile.mkdtemp(prefix="tritonllm-prometheus-"))
        config = self._dir / "prometheus.yml"
        config.write_text(json.dumps(scrape_config(metrics_urls, scrape_interval_s)))
        self.url = f"http://127.0.0.1:{free_port()}"
        self._argv = [binary(), f"--config.file={config}", f"--storage.tsdb.path={self._dir}/data",
                      f"--web.listen-address={self.url.removeprefix('http://')}",
                      "--log.level=warn"]
        self._proc: subprocess.Popen | None = None

    def __enter__(self) -> "Prometheus":
        with open(self._dir / "prometheus.log", "wb") as log:  # the child keeps its own copy
            self._proc = subprocess.Popen(self._argv, stdout=subprocess.DEVNULL, stderr=log,
                                          start_new_session=True)
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not self._ready():
            if self._proc.poll() is not None or time.monotonic() > deadline:
                log = (self._dir / "prometheus.log").read_text()[-2000:]
                self.__exit__()
                raise RuntimeError(f"prometheus did not become ready: {log}")
            time.sleep(0.2)
        return self

    def __exit__(self, *exc) -> None:
        if self._proc is not None and self._proc.poll() is None:
            kill_group(self._proc.pid)
            self._proc.wait()
        shutil.rmtree(self._dir, ignore_errors=True)

    def _ready(self) -> bool:
        from tritonllm.serve.launcher import http_ok

        return http_ok(f"{self.url}/-/ready")

    def _api(self, path: str, **params) -> dict:
        query = urllib.parse.urlencode(params)
        with urllib.request.urlopen(f"{self.url}/api/v1/{path}?{query}", timeout=30) as reply:
            body = json.load(reply)
        if body.get("status") != "success":
            raise RuntimeError(f"prometheus {path} {params}: {body}")
        return body["data"]

    def scrapes_done(self) -> int:
        """Scrapes of the slowest target so far (``up``'s samples)."""
        data = self._api("query", query="min(count_over_time(up[1h]))")
        return int(float(data["result"][0]["value"][1])) if data["result"] else 0

    def wait_for_scrapes(self, count: int, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while self.scrapes_done() < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"prometheus: fewer than {count} scrapes in {timeout_s} s")
            time.sleep(self.scrape_interval_s / 2)

    def query_range(self, expr: str, start: float, end: float, step: float,
                    legend: str = "") -> Series:
        """Each result series as ``[(unix time, value)]`` (NaN and gaps left out), named by
        ``legend`` with Grafana's ``{{label}}`` placeholders filled in."""
        data = self._api("query_range", query=expr, start=f"{start:.3f}", end=f"{end:.3f}",
                         step=f"{step:g}")
        series: Series = {}
        for result in data["result"]:
            name = legend or expr
            for label, value in result["metric"].items():
                name = name.replace("{{%s}}" % label, value)
            points = [(float(t), float(v)) for t, v in result["values"] if v != "NaN"]
            if points:
                series[name] = points
        return series
