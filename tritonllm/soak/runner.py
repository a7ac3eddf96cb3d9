"""Run a soak: ``concurrency`` worker threads, each looping over requests drawn from the mix
(seeded per worker) until the time is up, with ``neighbours`` busy processes beside the server
when asked; an RSS sampler alongside; then the end checks.

The end checks: workers get ``join_timeout_s`` to finish their last request (one still waiting
is *lost*); the engine must then go idle with every KV token free (``engine_stats``:
``free_kv_tokens == total_kv_tokens``, nothing running or waiting) within ``idle_timeout_s``;
RSS growth is measured from the first sample after ``warmup_s`` (allocators and caches fill
in the first requests) to a sample taken once the engine is idle, and from the very first
sample for reference.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

from tritonllm.defaults import GRPC_PORT, HTTP_PORT, METRICS_PORT, OPENAI_PORT
from tritonllm.bench.contention import busy_neighbours
from tritonllm.client import Client
from tritonllm.loadtest.providers import served_model_ids
from tritonllm.serve.metrics import engine_stats

from . import kinds, procs
from .kinds import Endpoints
from .tally import REJECTED, Record, Tally


@dataclass(frozen=True, kw_only=True)
class SoakConfig:
    """Where the server is and how hard to push it. URLs are ``host:port`` (a scheme and the
    metrics path are added when missing); ``openai_url`` None or "": no OpenAI kinds.
    ``max_rss_growth``: a fraction (0.05 = 5 %). ``server_pid``: None finds the process
    listening on the HTTP port. Times in seconds."""

    http_url: str = f"localhost:{HTTP_PORT}"
    grpc_url: str = f"localhost:{GRPC_PORT}"
    openai_url: str | None = f"localhost:{OPENAI_PORT}"
    metrics_url: str = f"localhost:{METRICS_PORT}"
    duration_s: float = 600.0
    concurrency: int = 16
    seed: int = 0
    window_s: float = 30.0
    warmup_s: float | None = None
    rss_interval_s: float = 5.0
    max_rss_growth: float = 0.05
    server_pid: int | None = None
    idle_timeout_s: float = 120.0
    join_timeout_s: float = 330.0
    output_dir: Path = Path("soak-results")
    neighbours: int = 0  # busy processes beside the server for the whole run

    def __post_init__(self) -> None:
        for name in ("duration_s", "window_s", "rss_interval_s", "idle_timeout_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name}: must be > 0, got {getattr(self, name)!r}")
        if self.neighbours < 0:
            raise ValueError(f"neighbours: must be >= 0, got {self.neighbours}")
        if self.concurrency < 1:
            raise ValueError(f"concurrency: must be >= 1, got {self.concurrency}")
        if self.max_rss_growth < 0:
            raise ValueError(f"max_rss_growth: must be >= 0, got {self.max_rss_growth}")
        if self.warmup_s is None:
            object.__setattr__(self, "warmup_s", min(60.0, 0.1 * self.duration_s))

    @property
    def metrics(self) -> str:
        url = self.metrics_url if "://" in self.metrics_url else f"http://{self.metrics_url}"
        return url if url.rstrip("/").endswith("/metrics") else url.rstrip("/") + "/metrics"

    @property
    def openai(self) -> str | None:
        if not self.openai_url:
            return None
        return self.openai_url if "://" in self.openai_url else f"http://{self.openai_url}"


@dataclass
class Samples:
    """RSS samples ``(seconds since start, bytes)`` of the server's process tree."""

    pid: int | None
    points: list[tuple[float, int]] = field(default_factory=list)

    def take(self, t: float) -> None:
        if self.pid is not None:
            self.points.append((t, procs.tree_rss_bytes(self.pid)))


def _endpoints(config: SoakConfig, model: str | None) -> Endpoints:
    return Endpoints(http=Client(protocol="http", url=config.http_url),
                     grpc=Client(protocol="grpc", url=config.grpc_url),
                     short=Client(protocol="grpc", url=config.grpc_url,
                                  timeout=kinds.SHORT_TIMEOUT_S),
                     openai_url=config.openai, openai_model=model)


def _one(tally: Tally, name: str, fn, ends: Endpoints, rng: random.Random, t0: float) -> str:
    """Send one request of kind ``name`` and book its outcome; return the outcome."""
    tally.sent()
    start = time.monotonic()
    try:
        outcome, detail = fn(ends, rng), ""
    except Exception as exc:  # noqa: BLE001 - every failure is booked, by type
        outcome, detail = kinds.classify(exc), str(exc)[:300]
    tally.add(Record(name, start - t0, time.monotonic() - start, outcome, detail))
    return outcome


def _worker(index: int, config: SoakConfig, model: str | None, tally: Tally, t0: float,
            deadline: float) -> None:
    rng = random.Random(config.seed * 1000 + index)
    mix = kinds.mix(config.openai is not None)
    names, weights = list(mix), [w for w, _ in mix.values()]
    ends = _endpoints(config, model)
    try:
        while time.monotonic() < deadline:
            name = rng.choices(names, weights)[0]
            if _one(tally, name, mix[name][1], ends, rng, t0) == REJECTED:
                time.sleep(rng.uniform(0.05, 0.2))  # back off as a client should
    finally:
        ends.close()


def preflight(config: SoakConfig) -> None:
    """Fail fast, with ValueError naming the URL, when an endpoint cannot be reached."""
    from tritonllm.client import TritonLLMError

    for protocol, url in (("http", config.http_url), ("grpc", config.grpc_url)):
        try:
            with Client(protocol=protocol, url=url, connect_timeout=5) as client:
                client.health()
        except TritonLLMError as exc:
            raise ValueError(f"cannot reach Triton's {protocol} endpoint {url}: {exc}") from exc
    urls = [config.metrics] + ([f"{config.openai}/v1/models"] if config.openai else [])
    for url in urls:
        try:
            requests.get(url, timeout=5).raise_for_status()
        except requests.RequestException as exc:
            raise ValueError(f"cannot reach {url}: {exc}") from exc


def openai_model(config: SoakConfig) -> str | None:
    """The model id the OpenAI frontend serves (its first ``/v1/models`` entry)."""
    if config.openai is None:
        return None
    return served_model_ids(config.openai)[0]


def server_pid(config: SoakConfig) -> int | None:
    if config.server_pid is not None:
        return config.server_pid
    return procs.pid_listening_on(int(config.http_url.rsplit(":", 1)[1]))


def wait_idle(metrics_url: str, timeout_s: float) -> tuple[bool, dict]:
    """Poll the engine until nothing runs or waits and every KV token is free; return
    ``(idle and KV full, last stats)``."""
    deadline = time.monotonic() + timeout_s
    while True:
        stats = engine_stats(metrics_url)
        full = (stats.get("free_kv_tokens") == stats.get("total_kv_tokens")
                and not stats.get("running") and not stats.get("waiting"))
        if full or time.monotonic() > deadline:
            return full, stats
        time.sleep(0.5)


@dataclass
class SoakRun:
    """What a soak observed: the books as they stood when the workers were joined (totals,
    per-kind outcomes, records), RSS samples, engine stats before and after, whether the engine
    went idle with a full KV cache, workers still stuck, seconds elapsed."""

    config: SoakConfig
    totals: dict
    by_kind: dict
    records: list[Record]
    samples: Samples
    stats_before: dict
    stats_after: dict
    kv_full: bool
    stuck_workers: int
    elapsed_s: float


def _sample_while(workers: list[threading.Thread], samples: Samples, t0: float,
                  until: float, interval_s: float) -> None:
    """Sample RSS every ``interval_s`` while a worker runs, up to ``until`` (monotonic)."""
    next_sample = time.monotonic()
    while any(w.is_alive() for w in workers) and time.monotonic() < until:
        if time.monotonic() >= next_sample:
            samples.take(time.monotonic() - t0)
            next_sample += interval_s
        time.sleep(min(0.2, interval_s))


def run_soak(config: SoakConfig) -> SoakRun:
    """Run the soak described by ``config`` (blocking for ``duration_s`` and the end checks);
    ValueError before any request when an endpoint cannot be reached."""
    preflight(config)
    model, samples = openai_model(config), Samples(server_pid(config))
    stats_before, tally = engine_stats(config.metrics), Tally()
    t0 = time.monotonic()
    deadline = t0 + config.duration_s
    workers = [threading.Thread(target=_worker, args=(i, config, model, tally, t0, deadline),
                                daemon=True, name=f"soak-{i}") for i in range(config.concurrency)]
    with busy_neighbours(config.neighbours):
        for w in workers:
            w.start()
        _sample_while(workers, samples, t0, deadline + config.join_timeout_s,
                      config.rss_interval_s)
    elapsed = time.monotonic() - t0
    totals, by_kind, records = tally.totals(), tally.by_kind(), list(tally.records)
    kv_full, stats_after = wait_idle(config.metrics, config.idle_timeout_s)
    samples.take(time.monotonic() - t0)
    return SoakRun(config, totals, by_kind, records, samples, stats_before, stats_after, kv_full,
                   sum(w.is_alive() for w in workers), elapsed)
