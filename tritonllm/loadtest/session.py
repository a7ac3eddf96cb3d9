"""Per-process load-test state: the options, the prompt pool, the arrival clock, the samples.

One :class:`LoadTestSession` lives on each Locust environment (``environment.tritonllm``). Users
draw prompts and arrival gaps from it and hand it their finished records; the Locust wiring
(``tritonllm.loadtest.locust_plugin``) ships a worker's records to the master and writes the
report from the master's (or the single process's) session. No Locust import here.
"""

from __future__ import annotations

import random
import uuid

from tritonllm.loadtest.metrics import RequestRecord
from tritonllm.loadtest.options import RunOptions
from tritonllm.loadtest.pool import ensure_pool, read_pool
from tritonllm.loadtest.workloads import Prompt
from tritonllm.model_source import resolve_model_dir


class LoadTestSession:
    """``seed_offset`` varies the prompt order per worker (same pool, different sequence)."""

    def __init__(self, options: RunOptions, seed_offset: int = 0) -> None:
        self.options = options
        self.records: list[RequestRecord] = []
        self.end_id: int | None = None  # the tokenizer's end-of-sequence id
        self.prompts: list[Prompt] = []
        self._rng = random.Random(options.workload.seed + 1 + seed_offset)

    def load_prompts(self) -> None:
        """Read the prompt pool, building it in a child process first if it is not cached
        (see ``tritonllm.loadtest.pool``); done before users start."""
        if self.prompts:
            return
        model_dir = resolve_model_dir(self.options.model_dir or None)
        self.prompts, self.end_id = read_pool(ensure_pool(self.options.workload, model_dir))

    def next_prompt(self) -> Prompt:
        if not self.prompts:
            raise RuntimeError("the prompt pool is empty: load_prompts() did not run")
        return self._rng.choice(self.prompts)

    def arrival_gap(self, users: int) -> float:
        """Seconds until a user's next request: 0 in closed loop, else exponential with rate
        ``request_rate / users`` (the users' merged arrivals are Poisson at ``request_rate``)."""
        if self.options.request_rate <= 0:
            return 0.0
        return self._rng.expovariate(self.options.request_rate / max(users, 1))

    @staticmethod
    def new_request_id() -> str:
        return uuid.uuid4().hex

    def add(self, record: RequestRecord) -> None:
        self.records.append(record)

    def take_records(self) -> list[dict]:
        """The records gathered since the last call, as wire dicts, and forget them."""
        taken, self.records = self.records, []
        return [r.to_wire() for r in taken]

    def merge(self, wire_records: list[dict]) -> None:
        self.records.extend(RequestRecord.from_wire(r) for r in wire_records)
