"""The Locust command lines the CLI builds (running them needs a server: see test_live)."""

import pytest

from tritonllm.loadtest.options import RunOptions, add_arguments
from tritonllm.loadtest.runner import LOADTEST_DIR, USERS, LocustRun
from tritonllm.loadtest.session import LoadTestSession


def test_locustfiles_exist_for_every_user_and_shape():
    for name in USERS.values():
        assert (LOADTEST_DIR / name).is_file()
    for shape in ("ramp", "step", "spike", "soak"):
        assert (LOADTEST_DIR / f"shape_{shape}.py").is_file()


def test_command_line(tmp_path):
    run = LocustRun(out_dir=str(tmp_path), user="grpc", users=3, run_time="20s",
                    workload="16/8", slo="ttft=1s", processes=2, request_rate=1.5)
    cmd = run.command()
    assert cmd[cmd.index("-H") + 1] == "127.0.0.1:8001"
    assert cmd[cmd.index("-f") + 1].endswith("loadtest/grpc_stream.py")
    pairs = {cmd[i]: cmd[i + 1] for i in range(len(cmd) - 1) if cmd[i].startswith("-")}
    assert pairs["-u"] == "3" and pairs["-r"] == "3" and pairs["-t"] == "20s"
    assert pairs["--processes"] == "2" and pairs["--request-rate"] == "1.5"
    assert pairs["--master-bind-host"] == "127.0.0.1"
    assert pairs["--master-bind-port"] == pairs["--master-port"]
    assert pairs["--csv"] == str(tmp_path / "locust") and pairs["--report-dir"] == str(tmp_path)
    shaped = LocustRun(out_dir="o", shape="step", shape_params="users=2").command()
    assert "-u" not in shaped and shaped[shaped.index("-f") + 1].endswith(
        "http_stream.py," + str(LOADTEST_DIR / "shape_step.py"))


@pytest.mark.parametrize("kwargs, field", [
    ({"user": "ftp"}, "user"), ({"users": 0}, "users"), ({"shape": "wave"}, "shape"),
    ({"workload": "0/1"}, "workload.input_tokens"), ({"slo": "ttft=fast"}, "slo.ttft"),
])
def test_bad_runs_name_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        LocustRun(out_dir="o", **kwargs)


def test_options_parse_from_argv():
    import argparse

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    ns = parser.parse_args(["--workload", "32/8", "--slo", "e2e=2s", "--request-rate", "2"])
    options = RunOptions.from_namespace(ns)
    assert options.workload.input_tokens == 32 and options.slo.limits == {"e2e": 2.0}
    with pytest.raises(ValueError, match="request_rate"):
        RunOptions(request_rate=-1)


def test_session_arrivals_and_record_shipping():
    closed = LoadTestSession(RunOptions())
    assert closed.arrival_gap(users=4) == 0.0
    open_loop = LoadTestSession(RunOptions(request_rate=8.0))
    gaps = [open_loop.arrival_gap(users=4) for _ in range(4000)]
    assert 0.45 < sum(gaps) / len(gaps) < 0.55  # exponential, mean users / rate = 0.5 s
    assert closed.new_request_id() != closed.new_request_id()
