"""Helpers shared by live tests: the server's engine metrics, transformers' greedy answer, a
tritonserver that runs command lines written for the GPU image."""

from __future__ import annotations

import time
from pathlib import Path

from tritonllm.serve.metrics import engine_stats, scrape


def engine_metrics(server) -> dict[str, float]:
    return engine_stats(server.metrics_url)


def triton_cancellations(server) -> float:
    """Requests Triton itself counted as cancelled, summed over the models."""
    return sum(value for series, value in scrape(server.metrics_url).items()
               if series.startswith("nv_inference_request_failure")
               and 'reason="CANCELED"' in series)


def wait_for_idle_cache(server, min_cancelled: float = 0, timeout_s: float = 60.0) -> dict:
    """Engine metrics once nothing runs, the cache is all free and ``cancelled`` has reached
    ``min_cancelled`` (or the timeout passed: the caller's asserts then say what is wrong)."""
    deadline = time.monotonic() + timeout_s
    metrics = engine_metrics(server)
    while time.monotonic() < deadline and not (
            metrics.get("running") == 0 and metrics["cancelled"] >= min_cancelled
            and metrics["free_kv_tokens"] == metrics["total_kv_tokens"]):
        time.sleep(0.25)
        metrics = engine_metrics(server)
    return metrics


def hf_greedy(hf_model, ids: list[int], max_new_tokens: int) -> list[int]:
    """transformers' greedy ``generate``: the new ids, end-of-sequence dropped."""
    import torch

    with torch.inference_mode():
        out = hf_model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids)),
                                max_new_tokens=max_new_tokens, do_sample=False)
    eos = hf_model.generation_config.eos_token_id
    eos = set(eos if isinstance(eos, list) else [eos])
    return [t for t in out[0, len(ids):].tolist() if t not in eos]


def tritonserver_shim(directory: Path) -> Path:
    """An executable that runs this machine's tritonserver with its backend and cache
    directories added: what a command line written for the GPU image's
    ``/opt/tritonserver/bin/tritonserver`` (which finds those itself) needs here."""
    from tritonllm.serve.launcher import backend_dir, pytriton_root

    shim = Path(directory) / "tritonserver"
    shim.write_text("#!/bin/sh\n"
                    f"exec {pytriton_root() / 'bin' / 'tritonserver'} "
                    f"--backend-directory={backend_dir()} "
                    f"--cache-directory={pytriton_root() / 'caches'} \"$@\"\n")
    shim.chmod(0o755)
    return shim
