"""Every Locust run ends by itself: pointed at a closed port it stops after a run of connection
failures (exit code 4, with the reason), at ``-t``, and on SIGTERM. Real Locust processes; the
subprocess timeouts only detect a hang, they assert nothing about speed."""

from __future__ import annotations

import signal
import subprocess

import pytest

from tritonllm.loadtest.guard import CONNECTION_FAILED_EXIT_CODE, ConnectionGuard
from tritonllm.loadtest.report import read_samples
from tritonllm.loadtest.runner import LocustRun, prepare_pool
from tritonllm.serve.launcher import free_port

HANG = 180  # seconds: far beyond any normal end; reaching it means the run hung


@pytest.fixture
def closed_run(tmp_path, pool_cache, model_dir):
    """A LocustRun builder aimed at a port nobody listens on."""
    port = free_port()

    def make(user: str, run_time: str = "10m", *extra: str) -> LocustRun:
        host = f"127.0.0.1:{port}" if user in ("grpc", "engine") else f"http://127.0.0.1:{port}"
        run = LocustRun(out_dir=str(tmp_path / user), user=user, host=host, users=2,
                        run_time=run_time, workload="input_tokens=8,output_tokens=2,num_prompts=4",
                        model_dir=str(model_dir), stop_timeout=5, extra_args=extra)
        prepare_pool(run)
        return run

    return make


@pytest.mark.parametrize("user", ["http-stream", "engine"])
def test_a_closed_port_stops_the_run_with_the_reason(closed_run, user):
    run = closed_run(user)  # -t 10m: only the connection guard can end it in time
    done = subprocess.run(run.command(), capture_output=True, text=True, timeout=HANG)
    assert done.returncode == CONNECTION_FAILED_EXIT_CODE, done.stderr[-3000:]
    assert "consecutive requests could not reach the server" in done.stderr


def test_a_run_ends_at_its_run_time_when_the_guard_is_off(closed_run):
    run = closed_run("grpc", "4s", "--max-connection-failures", "0")
    done = subprocess.run(run.command(), capture_output=True, text=True, timeout=HANG)
    assert done.returncode not in (0, CONNECTION_FAILED_EXIT_CODE), done.stderr[-3000:]


def test_sigterm_ends_a_run(closed_run):
    run = closed_run("engine", "10m", "--max-connection-failures", "0")
    proc = subprocess.Popen(run.command(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    try:
        for line in proc.stderr:  # wait until the users are sending
            if "Ramping to" in line or "All users spawned" in line:
                break
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=HANG)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
            raise AssertionError("Locust did not end on SIGTERM")


def test_the_guard_counts_consecutive_connection_failures_only():
    guard = ConnectionGuard(limit=3)
    refused = ConnectionRefusedError(111, "Connection refused")
    assert guard.record(refused) is None and guard.record(refused) is None
    assert guard.record(None) is None  # a success resets the run
    assert guard.record(ValueError("HTTP 400: max_tokens")) is None  # not a connection error
    assert [guard.record(refused) for _ in range(2)] == [None, None]
    reason = guard.record("[StatusCode.UNAVAILABLE] failed to connect to all addresses")
    assert "3 consecutive requests could not reach the server" in reason
    assert guard.record(refused) is None  # says it once
    assert ConnectionGuard(limit=0).record(refused) is None
    with pytest.raises(ValueError, match="max_connection_failures"):
        ConnectionGuard(limit=-1)


def test_requests_still_running_at_the_stop_timeout_are_reported_as_failed(tmp_path, pool_cache,
                                                                         model_dir):
    """A server that streams one token of each answer, then goes silent: open-loop requests
    are still in flight when the stop timeout runs out, and each is in the report as failed,
    not left out, with the chunk that had arrived."""
    import json
    import socket
    import threading

    from tritonllm.loadtest.trace import UNFINISHED

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    held = []

    event = b'data: {"text_output": "Hi", "num_input_tokens": 8, "num_output_tokens": 1}\n\n'
    first_token = (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                   b"Transfer-Encoding: chunked\r\n\r\n" +
                   f"{len(event):x}\r\n".encode() + event + b"\r\n")

    def answer_then_hold(conn):
        conn.recv(65536)  # the request (small enough for one read)
        conn.sendall(first_token)

    def accept_and_hold():
        while True:
            try:
                conn = listener.accept()[0]
            except OSError:
                return
            held.append(conn)
            threading.Thread(target=answer_then_hold, args=(conn,), daemon=True).start()

    threading.Thread(target=accept_and_hold, daemon=True).start()
    try:
        run = LocustRun(out_dir=str(tmp_path / "run"), user="http-stream",
                        host=f"http://127.0.0.1:{listener.getsockname()[1]}", users=2,
                        run_time="3s", request_rate=2.0, stop_timeout=2,
                        workload="input_tokens=8,output_tokens=2,num_prompts=4",
                        model_dir=str(model_dir))
        prepare_pool(run)
        done = subprocess.run(run.command(), capture_output=True, text=True, timeout=HANG)
    finally:
        listener.close()
        for conn in held:
            conn.close()
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())["summary"]
    assert summary["requests"] >= 2, done.stderr[-3000:]
    assert summary["failed"] == summary["requests"]
    assert summary["errors"] == {UNFINISHED: summary["requests"]}
    records = read_samples(tmp_path / "run" / "samples.jsonl")
    assert all(len(r.chunk_times) == 1 and r.output_tokens == 1 for r in records)
