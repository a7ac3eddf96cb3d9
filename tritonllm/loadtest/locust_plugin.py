"""Locust wiring: our options, per-process sessions, merging samples across workers, reports.

Import it from a locustfile (``from tritonllm.loadtest import locust_plugin``); importing
registers listeners on Locust's default event hooks, as Locust plugins do.

Samples across processes (``--processes N`` or ``--master`` / ``--worker``): each worker ships
the records it finished since its last report inside Locust's periodic ``report_to_master``
message; the master merges them. At the end of a test the master asks every worker to flush
(custom message ``tritonllm_flush``): a worker stops its users (gracefully, within Locust's
``--stop-timeout``, so in-flight requests finish) and answers ``tritonllm_final`` with its
remaining records. The master writes the report once every worker has answered (or after
``stop_timeout + 30`` seconds, with a warning naming the missing workers).

The report is written when a test stops (on the master, or on the single process). With
``--slo`` the process exits with code 3 when the SLO fails.

Every run ends (tritonllm.loadtest.guard): ``--max-connection-failures`` consecutive requests
that cannot reach the server stop it with the reason and exit code 4; and once Locust fires
``quit`` a backstop thread ends the process if interpreter shutdown hangs.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime
from pathlib import Path

import gevent
from locust import events
from locust.runners import STATE_STOPPED, MasterRunner, WorkerRunner

from tritonllm.loadtest.guard import (CONNECTION_FAILED_EXIT_CODE,
                                     DEFAULT_MAX_CONNECTION_FAILURES, ConnectionGuard,
                                     arm_exit_backstop)
from tritonllm.loadtest.metrics import summarize
from tritonllm.loadtest import server_counts
from tritonllm.loadtest.options import RunOptions, add_arguments
from tritonllm.loadtest.report import write_report
from tritonllm.loadtest.session import LoadTestSession
from tritonllm.loadtest.slo import SLO_FAILED_EXIT_CODE

log = logging.getLogger("tritonllm.loadtest")

RECORDS_KEY = "tritonllm_records"
FLUSH = "tritonllm_flush"
FINAL = "tritonllm_final"
FLUSH_GRACE_S = 30.0
# The engine counts a request just after its last response goes out, and refreshes its gauges
# twice a second: read its counters at the end of a run after this long.
SERVER_COUNTS_SETTLE_S = 1.0


class RunController:
    """What one Locust process keeps for the run: its session, and on the master the set of
    workers that have sent their final records."""

    def __init__(self, environment, options: RunOptions) -> None:
        self.environment = environment
        self.session = LoadTestSession(options, seed_offset=_worker_index(environment))
        self.final_workers: set[str] = set()
        self.progress = None
        self.exit_code: int | None = None
        parsed = environment.parsed_options
        self.guard = ConnectionGuard(int(getattr(parsed, "max_connection_failures",
                                                 DEFAULT_MAX_CONNECTION_FAILURES)))
        self.abort_reason: str | None = None
        self.server_before: dict | None = None  # engine counters at the start (--server-metrics)
        self.server_moved: dict | None = None  # and their change over the run
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        self.report_dir = Path(options.report_dir or f"out/loadtest/run-{stamp}")

    @property
    def options(self) -> RunOptions:
        return self.session.options

    def total_users(self) -> int:
        parsed = self.environment.parsed_options
        return int(getattr(parsed, "num_users", 0) or 0) or self.environment.runner.user_count


def _worker_index(environment) -> int:
    return int(getattr(environment.runner, "worker_index", 0) or 0)


def _options(environment) -> RunOptions:
    parsed = environment.parsed_options
    try:
        return RunOptions.from_namespace(parsed) if parsed is not None else RunOptions()
    except ValueError as exc:
        log.error("%s", exc)
        raise SystemExit(2) from None


@events.init_command_line_parser.add_listener
def _add_options(parser, **_kw) -> None:
    add_arguments(parser)
    parser.add_argument("--max-connection-failures", type=int,
                        default=DEFAULT_MAX_CONNECTION_FAILURES,
                        help="stop the run (exit code 4) after this many consecutive requests "
                             "that cannot reach the server; 0: never")


def _on_request(environment, request_type, exception=None, **_kw) -> None:
    """Feed every request's outcome to the connection guard; stop the run when it trips."""
    controller = environment.tritonllm
    if request_type == "METRIC":
        return
    reason = controller.guard.record(exception)
    if reason is not None:
        log.error("%s", reason)
        controller.abort_reason = reason
        gevent.spawn(environment.runner.quit)


@events.quit.add_listener
def _on_quit(exit_code, **_kw) -> None:
    arm_exit_backstop(exit_code)


@events.init.add_listener
def _on_init(environment, **_kw) -> None:
    environment.tritonllm = RunController(environment, _options(environment))
    environment.events.request.add_listener(
        lambda **kw: _on_request(environment, **kw))
    runner = environment.runner
    if isinstance(runner, WorkerRunner):
        _wire_worker(environment)
        return
    # Build the prompt pool before the run-time clock starts; workers then only read it.
    _load_pool(environment.tritonllm.session)
    if isinstance(runner, MasterRunner):
        _wire_master(environment)


def _wire_worker(environment) -> None:
    environment.events.report_to_master.add_listener(
        lambda client_id, data, **kw: _ship(environment, data))
    environment.runner.register_message(
        FLUSH, lambda environment, msg, **kw: _flush(environment), concurrent=True)


def _wire_master(environment) -> None:
    environment.events.worker_report.add_listener(
        lambda client_id, data, **kw: environment.tritonllm.session.merge(
            data.get(RECORDS_KEY, [])))
    environment.runner.register_message(
        FINAL, lambda environment, msg, **kw: _on_final(environment, msg))


def _ship(environment, data: dict) -> None:
    data[RECORDS_KEY] = environment.tritonllm.session.take_records()


def _send_final(environment) -> None:
    environment.runner.send_message(FINAL, {RECORDS_KEY: environment.tritonllm.session.take_records()})


def _flush(environment) -> None:
    """On a worker: stop the users (test_stop then sends the final records)."""
    if environment.runner.state == STATE_STOPPED:
        _send_final(environment)
    else:
        environment.runner.stop()


def _on_final(environment, msg) -> None:
    controller = environment.tritonllm
    controller.session.merge(msg.data.get(RECORDS_KEY, []))
    controller.final_workers.add(msg.node_id)


@events.test_start.add_listener
def _on_test_start(environment, **_kw) -> None:
    controller = environment.tritonllm
    if isinstance(environment.runner, MasterRunner):
        controller.session.records.clear()
        controller.final_workers.clear()
    else:
        _prepare_session(environment)
    if not isinstance(environment.runner, WorkerRunner):
        controller.server_before = _server_counts(controller.options)
    if not isinstance(environment.runner, WorkerRunner) and controller.options.progress_interval:
        controller.progress = gevent.spawn(_progress_loop, controller)


def _prepare_session(environment) -> None:
    """Read the prompt pool, rebuilding the session if the options changed (a remote worker
    gets the master's options with the spawn message)."""
    controller = environment.tritonllm
    options = _options(environment)
    if options != controller.options:
        controller.session = LoadTestSession(options, seed_offset=_worker_index(environment))
    _load_pool(controller.session)


def _load_pool(session: LoadTestSession) -> None:
    started = time.perf_counter()
    try:
        session.load_prompts()
    except ValueError as exc:
        log.error("%s", exc)
        raise SystemExit(2) from None
    log.info("workload ready: %d prompts (%s) in %.1f s", len(session.prompts),
             session.options.workload.describe(), time.perf_counter() - started)


def _progress_loop(controller: RunController) -> None:
    started = time.time()
    while True:
        gevent.sleep(controller.options.progress_interval)
        log.info("[%4.0fs] %s", time.time() - started, progress_line(controller.session.records))


def progress_line(records) -> str:
    s = summarize(records)
    ttft, tpot = s.latency_ms["ttft"].p50, s.latency_ms["tpot"].p50
    parts = [f"{s.succeeded} ok, {s.failed} failed, {s.rejected} rejected (busy)",
             f"{s.output_token_throughput:.1f} out tok/s"]
    if ttft is not None:
        parts.append(f"TTFT p50 {ttft:.0f} ms")
    if tpot is not None:
        parts.append(f"TPOT p50 {tpot:.1f} ms")
    return ", ".join(parts)


@events.test_stop.add_listener
def _on_test_stop(environment, **_kw) -> None:
    runner = environment.runner
    if isinstance(runner, WorkerRunner):
        _send_final(environment)
        return
    controller = environment.tritonllm
    if controller.progress is not None:
        controller.progress.kill(block=False)
        controller.progress = None
    if isinstance(runner, MasterRunner):
        _collect_finals(environment)
    controller.server_moved = _server_moved(controller)
    _write(environment)


def _collect_finals(environment) -> None:
    runner, controller = environment.runner, environment.tritonllm
    expected = {client.id for client in runner.clients.all}
    runner.send_message(FLUSH, None)
    deadline = time.monotonic() + (environment.stop_timeout or 0) + FLUSH_GRACE_S
    while not expected <= controller.final_workers and time.monotonic() < deadline:
        gevent.sleep(0.1)
    missing = expected - controller.final_workers
    if missing:
        log.warning("no final samples from worker(s) %s: the report may miss their last "
                    "requests", ", ".join(sorted(missing)))


def _server_counts(options: RunOptions) -> dict | None:
    if not options.server_metrics:
        return None
    try:
        return server_counts.read(options.server_metrics)
    except Exception as exc:  # the report goes on without them
        log.warning("--server-metrics %s: %s", options.server_metrics, exc)
        return None


def _server_moved(controller: RunController) -> dict | None:
    """The engine's counters' change since the run started (None without them)."""
    if controller.server_before is None:
        return None
    gevent.sleep(SERVER_COUNTS_SETTLE_S)
    after = _server_counts(controller.options)
    return None if after is None else server_counts.difference(controller.server_before, after)


def run_info(environment) -> dict:
    parsed, options = environment.parsed_options, environment.tritonllm.options
    return {
        "label": options.label or environment.tritonllm.report_dir.name,
        "host": environment.host,
        "user_classes": ", ".join(sorted(u.__name__ for u in environment.user_classes)),
        "users": getattr(parsed, "num_users", None),
        "request_rate": options.request_rate or "closed loop",
        "workload": options.workload.describe(),
        "workload_spec": options.workload_spec,
        "processes": getattr(parsed, "processes", None),
        "slo": options.slo_spec or None,
        "finished": datetime.now().isoformat(timespec="seconds"),
        "server": environment.tritonllm.server_moved,
    }


def _write(environment) -> None:
    controller = environment.tritonllm
    records = controller.session.records
    try:
        doc = write_report(records, run_info(environment), controller.report_dir,
                           controller.options.slo)
    except Exception:
        log.exception("writing the load-test report failed")
        controller.exit_code = 2
        return
    log.info("report: %s (%d requests)\n%s", controller.report_dir, len(records),
             (controller.report_dir / "summary.md").read_text())
    slo = doc["slo"]
    controller.exit_code = SLO_FAILED_EXIT_CODE if slo and not slo["passed"] else None
    if slo:
        log.info("SLO %s: %s", slo["slo"], "PASSED" if slo["passed"] else "FAILED")


@events.quitting.add_listener
def _on_quitting(environment, **_kw) -> None:
    controller = getattr(environment, "tritonllm", None)
    if controller is not None and controller.abort_reason is not None:
        log.error("run stopped early: %s", controller.abort_reason)
        environment.process_exit_code = CONNECTION_FAILED_EXIT_CODE
    elif controller is not None and controller.exit_code is not None:
        environment.process_exit_code = controller.exit_code
