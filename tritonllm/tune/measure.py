"""The real measurement on the CPU twin: the candidate's profile served by a tritonserver of
its own, Locust's open-loop users against it.

Per candidate: the profile becomes the deployment ``tritonllm serve --profile`` runs
(:func:`tritonllm.build.repo_values.cpu_deployment`; an invalid or rejected profile is a
``ValueError`` naming why), rendered into ``<out>/repos/<id>`` and served on free loopback
ports without the OpenAI frontend; five seconds of closed-loop load with a full batch warm it
up. Per probe: one headless Locust run (``tritonllm.loadtest.runner``) of ``probe_s`` seconds at
the rate with the ensemble's HTTP streaming user, its report in
``<out>/runs/<id>-<tag>-r<rate>/`` and Locust's output in ``locust.log`` there; requests still
in flight then finish, and the probe is judged from the run's samples.

:class:`RunningMeasurer` probes a deployment that is already running (``tune --url``) the same
way, starting and stopping nothing; :class:`tritonllm.tune.gpu.GpuMeasurer` deploys each
candidate on a GPU node instead.

Prompts the server has not seen: the KV-cache reuse of an earlier probe's prompts would make
every later probe on the same server faster than the first, and a candidate's result depend on
how many probes it had. So a synthetic or shared-prefix workload is drawn afresh for every run
(:func:`fresh_workload`: its own seed, and four prompts per request expected so that few repeat
within the run); a prompt file is sent as it is.
"""

from __future__ import annotations

import hashlib
import math
import subprocess
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import yaml

from tritonllm.build.profile import BuildProfile
from tritonllm.loadtest.report import read_samples
from tritonllm.loadtest.runner import LocustRun, prepare_pool
from tritonllm.loadtest.slo import Slo
from tritonllm.loadtest.workloads import WorkloadConfig, parse_spec
from tritonllm.tune.probe import Probe, from_records

USER = "http-stream"  # the ensemble's generate_stream: TTFT and every chunk gap, exactly
USERS = 4  # Locust users; in open loop each keeps any number of requests in flight
DRAIN_S = 60.0  # Locust's --stop-timeout: requests in flight at the end get this long
WARM_UP_S = 5.0  # seconds of closed-loop load before a candidate's first probe
WARM_UP_USERS = 64  # at most this many of the batch's rows are filled by the warm-up


class CpuTwinMeasurer:
    def __init__(self, out_dir: Path, workload: str, slo: Slo, probe_s: float,
                 num_threads: int = 0, processes: int = 0) -> None:
        """``processes``: Locust processes per run (0: one, beside the server on the CPU
        twin's cores)."""
        if probe_s < 5:
            raise ValueError(f"probe_time: must be >= 5 s, got {probe_s:g}")
        if processes < 0:
            raise ValueError(f"processes: must be >= 0, got {processes}")
        self.out_dir = Path(out_dir)
        self.workload, self.slo = workload, slo
        self.probe_s, self.num_threads = probe_s, num_threads
        self.processes = processes
        self.server = None
        self._id = ""
        self._started_at: float | None = None
        self._model_dir = ""

    def start(self, profile: BuildProfile) -> None:
        self._started_at = time.monotonic()
        self._id = hashlib.sha256(repr(profile.to_dict()).encode()).hexdigest()[:10]
        (self.out_dir / "repos").mkdir(parents=True, exist_ok=True)
        self.server, self._model_dir = self._launch(profile)
        self._warm_up(profile.limits.max_batch_size)

    def _launch(self, profile: BuildProfile):
        """Start ``profile``'s server; returns it (ready) and the tokenizer directory of the
        prompts ("" for the default model)."""
        from tritonllm.build.repo_values import cpu_deployment
        from tritonllm.serve.launcher import LaunchError, Ports, TritonServer

        deployment = cpu_deployment(profile, self.out_dir / "repos" / self._id)
        deployment = replace(deployment, engine=replace(deployment.engine,
                                                        num_threads=self.num_threads))
        server = TritonServer(deployment.prepare(), Ports.free(),
                              log_file=self.out_dir / "repos" / f"{self._id}.log")
        try:
            server.start()
        except LaunchError as exc:
            raise ValueError(f"tritonserver did not start: {exc}") from None
        return server, deployment.model or ""

    def _warm_up(self, batch: int) -> None:
        """A few seconds of closed-loop load with the batch full: the engine meets its batch
        shapes and touches its memory before the first probe, so a cold server does not fall
        behind at the probe's start (in open loop it would never catch up)."""
        users = min(batch, WARM_UP_USERS)
        self._run("warm-up", users=users, rate=0.0, run_time=WARM_UP_S, requests=users * 8)

    def _run(self, name: str, users: int, rate: float, run_time: float, requests: int) -> Path:
        """One Locust run into ``runs/<candidate id>-<name>``."""
        run = self.locust_run(name, users, rate, run_time, requests,
                              host=f"http://{self.server.http_url}")
        prepare_pool(run)
        with (Path(run.out_dir) / "locust.log").open("w") as out:
            subprocess.run(run.command(), stdout=out, stderr=subprocess.STDOUT)
        return Path(run.out_dir)

    def locust_run(self, name: str, users: int, rate: float, run_time: float, requests: int,
                   host: str) -> LocustRun:
        """The run ``_run`` starts; every candidate's run of the same name draws the same
        prompts, so candidates are compared on equal work."""
        run_dir = self.out_dir / "runs" / f"{self._id}-{name}"
        run_dir.mkdir(parents=True, exist_ok=True)
        workload = self.workload
        fresh = fresh_workload(workload, seed=_seed(name), requests=requests)
        if fresh is not None:
            path = run_dir / "workload.yaml"
            path.write_text(yaml.safe_dump({k: v for k, v in asdict(fresh).items()
                                            if v is not None}))
            workload = str(path)
        return LocustRun(out_dir=str(run_dir), user=USER, host=host,
                         users=max(users, self.processes), run_time=f"{run_time:g}s",
                         workload=workload, request_rate=rate, stop_timeout=DRAIN_S,
                         model_dir=self._model_dir, label=f"{self._id} {name}",
                         processes=self.processes)

    def probe(self, rate: float, tag: str) -> Probe:
        began = self._started_at or time.monotonic()
        self._started_at = None
        run_dir = self._run(f"{tag}-r{rate:g}", users=USERS, rate=rate, run_time=self.probe_s,
                            requests=math.ceil(rate * self.probe_s))
        samples = run_dir / "samples.jsonl"
        if not samples.is_file():
            raise ValueError(f"the load test at {rate:g} req/s wrote no samples; see "
                             f"{run_dir / 'locust.log'}")
        return from_records(read_samples(samples), self.slo, rate,
                            seconds=time.monotonic() - began, run_dir=str(run_dir))

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None


def fresh_workload(spec: str, seed: int, requests: int) -> WorkloadConfig | None:
    """``spec`` drawn anew with ``seed`` and at least four prompts per expected request; None
    for a workload of given prompts (a file, JSON schemas), which is sent as it is."""
    config = parse_spec(spec)
    if config.kind not in ("synthetic", "shared_prefix"):
        return None
    return replace(config, seed=seed, num_prompts=max(config.num_prompts, 4 * requests))


def _seed(name: str) -> int:
    """A run's seed from its name (``search-r2.5``): the same for every candidate and when a
    tune run resumes."""
    return int(hashlib.sha256(name.encode()).hexdigest()[:8], 16)


class RunningMeasurer(CpuTwinMeasurer):
    """A deployment already running at ``url`` (Triton's HTTP endpoint serving the ensemble),
    measured as it runs: never started, changed or stopped here, so only its own settings are
    measured. The profile says which tokenizer makes the prompts."""

    def __init__(self, out_dir: Path, workload: str, slo: Slo, probe_s: float, url: str,
                 processes: int = 0) -> None:
        super().__init__(out_dir, workload, slo, probe_s, processes=processes)
        self.url = url.removeprefix("http://").rstrip("/")

    def _launch(self, profile: BuildProfile):
        from tritonllm.serve.launcher import http_ok

        if not http_ok(f"http://{self.url}/v2/health/ready"):
            raise ValueError(f"url: {self.url} does not answer Triton's GET /v2/health/ready")
        return Endpoint(self.url), prompt_tokenizer(profile)


def prompt_tokenizer(profile: BuildProfile) -> str:
    """The tokenizer directory the load test makes ``profile``'s prompts with
    (:func:`tritonllm.build.source.tokenizer_dir`); "" for the default model, which the load
    test resolves (and fetches) itself."""
    from tritonllm.build import source

    if profile.model_path() is None and not profile.model.tokenizer_dir:
        return ""
    return str(source.tokenizer_dir(profile))


@dataclass(frozen=True)
class Endpoint:
    """A server this process did not start: stopping it is not ours to do."""

    http_url: str

    def stop(self) -> None:
        pass
