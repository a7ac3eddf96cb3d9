"""LLM latency and throughput metrics, defined exactly, computed from our own samples.

Locust rounds the response times it stores (to 2 significant digits above 100 ms), so every
figure here comes from raw per-request records, never from Locust's stats.

One request is a :class:`RequestRecord`. Its times are seconds measured with a monotonic clock
(``time.perf_counter``) from the moment the request was handed to the client library:

- ``chunk_times``: when each NON-EMPTY chunk arrived (a chunk whose text is empty, such as the
  empty final response of a stream or a held-back partial character, is not a chunk here).
- ``end``: when the last byte of the last response arrived.

Per-request metrics (streamed requests only, else ``None``):

- **TTFT**, time to first token = ``chunk_times[0]``.
- **TT2T**, time to second token = ``chunk_times[1] - chunk_times[0]`` (the gap after the first
  token, as AIPerf defines it).
- **ITL**, inter-token latency: the gaps ``chunk_times[i+1] - chunk_times[i]``. The ITL
  distribution POOLS every gap of every request (a 100-token request weighs 99 gaps).
- **TPOT**, time per output token = ``(E2E - TTFT) / (output_tokens - 1)``, defined when the
  server reported ``output_tokens >= 2``.

For every request:

- **E2E** = ``end``. For a non-streamed request E2E is its only latency.
- **input_tokens / output_tokens**: the counts the SERVER reported (``num_input_tokens`` /
  ``num_output_tokens``), never our own estimate.

Run aggregates (:func:`summarize`): the window runs from the first request's start to the last
request's end (failed requests included). ``request_throughput`` = successful requests /
window; ``output_token_throughput`` = output tokens of successful requests / window;
``goodput`` = requests meeting every SLO / window (see ``tritonllm.loadtest.slo``).
Distributions report count, mean, min, p50, p90, p95, p99 and max; percentiles interpolate
linearly between closest ranks (numpy's default). Latencies are reported in milliseconds.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field

import numpy as np

from tritonllm.contract import is_busy_message

PERCENTILES = (50, 90, 95, 99)
LATENCY_METRICS = ("ttft", "tt2t", "itl", "tpot", "e2e")


@dataclass(frozen=True)
class RequestRecord:
    """One request as the load generator saw it (see the module docstring for the clock).

    ``start`` is wall-clock epoch seconds (``time.time()``), used only to place the request on
    a timeline; every duration comes from the monotonic offsets. ``chunk_tokens[i]`` is how many
    output tokens arrived with chunk ``i`` when the server reports running counts, else empty.
    ``error`` is ``None`` on success, else a short kind such as ``"HTTP 400"``; a refusal
    because the server was busy (HTTP 503, ``ServerBusyError``) is :attr:`rejected`, counted
    apart from errors: it is the server shedding load, not a fault.
    """

    request_id: str
    user: str
    start: float
    end: float
    streamed: bool
    chunk_times: tuple[float, ...] = ()
    chunk_tokens: tuple[int, ...] = ()
    input_tokens: int | None = None
    output_tokens: int | None = None
    error: str | None = None

    def __post_init__(self) -> None:
        if self.end < 0:
            raise ValueError(f"end: must be >= 0 seconds after start, got {self.end}")
        times = self.chunk_times
        if any(b < a for a, b in zip(times, times[1:])):
            raise ValueError("chunk_times: must be non-decreasing")
        if times and (times[0] < 0 or times[-1] > self.end):
            raise ValueError(f"chunk_times: must lie within [0, end={self.end}], got {times}")
        if self.chunk_tokens and len(self.chunk_tokens) != len(times):
            raise ValueError("chunk_tokens: must be empty or hold one count per chunk time")

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def rejected(self) -> bool:
        return self.error is not None and (self.error.startswith("HTTP 503")
                                           or is_busy_message(self.error))

    @property
    def e2e(self) -> float:
        return self.end

    @property
    def ttft(self) -> float | None:
        return self.chunk_times[0] if self.streamed and self.chunk_times else None

    @property
    def tt2t(self) -> float | None:
        if not self.streamed or len(self.chunk_times) < 2:
            return None
        return self.chunk_times[1] - self.chunk_times[0]

    @property
    def itl(self) -> tuple[float, ...]:
        """This request's gaps between consecutive non-empty chunks."""
        if not self.streamed:
            return ()
        times = self.chunk_times
        return tuple(b - a for a, b in zip(times, times[1:]))

    @property
    def tpot(self) -> float | None:
        if self.ttft is None or self.output_tokens is None or self.output_tokens < 2:
            return None
        return (self.end - self.ttft) / (self.output_tokens - 1)

    def to_wire(self) -> dict:
        """A plain dict (msgpack/JSON safe) for Locust messages and samples files."""
        return asdict(self)

    @classmethod
    def from_wire(cls, data: dict) -> "RequestRecord":
        data = dict(data)
        data["chunk_times"] = tuple(data.get("chunk_times", ()))
        data["chunk_tokens"] = tuple(data.get("chunk_tokens", ()))
        return cls(**data)


@dataclass(frozen=True)
class Distribution:
    """Summary statistics of one sample; all ``None`` when the sample is empty."""

    count: int
    mean: float | None = None
    min: float | None = None
    p50: float | None = None
    p90: float | None = None
    p95: float | None = None
    p99: float | None = None
    max: float | None = None

    @classmethod
    def of(cls, values, scale: float = 1.0) -> "Distribution":
        """Statistics of ``values`` multiplied by ``scale`` (1000 turns seconds into ms)."""
        arr = np.asarray([v for v in values if v is not None], dtype=np.float64) * scale
        if arr.size == 0:
            return cls(count=0)
        p50, p90, p95, p99 = (float(p) for p in np.percentile(arr, PERCENTILES))
        return cls(count=int(arr.size), mean=float(arr.mean()), min=float(arr.min()),
                   p50=p50, p90=p90, p95=p95, p99=p99, max=float(arr.max()))


@dataclass(frozen=True)
class Summary:
    """Aggregates of one run; latencies in ms, throughputs per second of the window.
    ``requests`` = ``succeeded`` + ``failed`` + ``rejected`` (refused because the server was
    busy; not in ``errors``)."""

    requests: int
    succeeded: int
    failed: int
    errors: dict[str, int]
    window_s: float
    request_throughput: float
    output_token_throughput: float
    input_tokens_total: int
    output_tokens_total: int
    latency_ms: dict[str, Distribution]
    tokens: dict[str, Distribution]
    requests_by_user: dict[str, int] = field(default_factory=dict)
    rejected: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


def window(records: list[RequestRecord]) -> tuple[float, float]:
    """(first start, last end) in epoch seconds; (0, 0) for no records."""
    if not records:
        return 0.0, 0.0
    return min(r.start for r in records), max(r.start + r.end for r in records)


def latency_distributions(ok: list[RequestRecord]) -> dict[str, Distribution]:
    """TTFT, TT2T, pooled ITL, TPOT and E2E distributions in ms (successful requests)."""
    return {
        "ttft": Distribution.of((r.ttft for r in ok), 1000.0),
        "tt2t": Distribution.of((r.tt2t for r in ok), 1000.0),
        "itl": Distribution.of((gap for r in ok for gap in r.itl), 1000.0),
        "tpot": Distribution.of((r.tpot for r in ok), 1000.0),
        "e2e": Distribution.of((r.e2e for r in ok), 1000.0),
    }


def summarize(records: list[RequestRecord]) -> Summary:
    """Aggregate ``records`` (every request of the run, failed ones included)."""
    ok = [r for r in records if r.ok]
    rejected = [r for r in records if r.rejected]
    first, last = window(records)
    span = last - first
    out_total = sum(r.output_tokens or 0 for r in ok)
    return Summary(
        requests=len(records),
        succeeded=len(ok),
        failed=len(records) - len(ok) - len(rejected),
        errors=dict(Counter(r.error for r in records if not r.ok and not r.rejected)),
        window_s=span,
        request_throughput=len(ok) / span if span > 0 else 0.0,
        output_token_throughput=out_total / span if span > 0 else 0.0,
        input_tokens_total=sum(r.input_tokens or 0 for r in ok),
        output_tokens_total=out_total,
        latency_ms=latency_distributions(ok),
        tokens={
            "input": Distribution.of(r.input_tokens for r in ok),
            "output": Distribution.of(r.output_tokens for r in ok),
        },
        requests_by_user=dict(Counter(r.user for r in records)),
        rejected=len(rejected),
    )
