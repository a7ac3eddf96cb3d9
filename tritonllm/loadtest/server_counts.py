"""What the engine counted during a load-test run, from its Prometheus endpoint: tokens, steps,
guided requests and speculative decoding (``--server-metrics``, Triton's ``/metrics`` URL).

The engine's counters are read when the run starts and when it ends; the report holds their
differences, with speculation's acceptance rate (accepted / drafted tokens) and mean accepted
length (accepted tokens per draft), as vLLM defines them.
"""

from __future__ import annotations

COUNTED = ("generated_tokens", "steps", "guided_requests", "spec_drafts", "spec_draft_tokens",
           "spec_accepted_tokens")


def read(metrics_url: str) -> dict[str, float]:
    """The engine's counters now (``EngineStats`` field names)."""
    from tritonllm.serve.metrics import engine_stats

    stats = engine_stats(metrics_url)
    return {name: stats.get(name, 0.0) for name in COUNTED}


def difference(before: dict[str, float], after: dict[str, float]) -> dict:
    """The counters' change over the run, and speculation's two ratios (None: no drafts)."""
    moved = {name: int(after[name] - before[name]) for name in COUNTED}
    drafted, drafts = moved["spec_draft_tokens"], moved["spec_drafts"]
    accepted = moved["spec_accepted_tokens"]
    moved["spec_acceptance_rate"] = round(accepted / drafted, 3) if drafted else None
    moved["spec_mean_accepted_length"] = round(accepted / drafts, 3) if drafts else None
    return moved
