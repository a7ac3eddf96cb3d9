"""A short soak against the session's real server (and an OpenAI frontend in front of it):
the books balance, nothing is lost or fails, the KV cache comes back to full, files exist."""

from __future__ import annotations

import json

from tritonllm.soak import procs
from tritonllm.soak.report import summarize, write
from tritonllm.soak.runner import SoakConfig, run_soak
from tritonllm.soak.tally import COMPLETED, Record, Tally


def test_the_books_count_every_request_once():
    tally = Tally()
    for outcome in (COMPLETED, "error:ValueError", COMPLETED):
        tally.sent()
        tally.add(Record("k", 0.0, 0.1, outcome))
    tally.sent()  # never answered
    totals = tally.totals()
    assert (totals["sent"], totals["completed"], totals["errors"], totals["lost"]) == (
        4, 2, {"ValueError": 1}, 1)


def test_the_server_and_its_stubs_are_found_by_port(triton_server):
    pid = procs.pid_listening_on(int(triton_server.http_url.rsplit(":", 1)[1]))
    assert pid is not None
    assert "tritonserver" in (procs.PROC / str(pid) / "cmdline").read_text()
    assert len(procs.tree(pid)) > 1  # the Python backend stubs
    assert procs.tree_rss_bytes(pid) > procs.rss_bytes(pid) > 0


def test_a_short_soak_loses_nothing_and_leaves_the_kv_cache_full(triton_server, openai_frontend,
                                                                   tmp_path):
    """With a busy neighbour beside the server, as on a shared node."""
    config = SoakConfig(http_url=triton_server.http_url, grpc_url=triton_server.grpc_url,
                        openai_url=openai_frontend.url, metrics_url=triton_server.metrics_url,
                        duration_s=10, concurrency=4, window_s=5, rss_interval_s=1,
                        output_dir=tmp_path, neighbours=1)
    run = run_soak(config)
    summary = summarize(run)
    paths = write(summary, run, tmp_path)

    totals = summary["totals"]
    assert totals["sent"] == totals["accounted"] > 0
    assert totals["lost"] == 0 and run.stuck_workers == 0
    assert totals["errors"] == {}, [r for r in run.records if r.outcome.startswith("error")]
    assert totals["completed"] > 0
    assert summary["kv"]["full"] and summary["rss"]["end_mb"] > 0
    assert all(p.exists() and p.stat().st_size > 0 for p in paths)
    assert json.loads(paths[0].read_text())["totals"] == totals
