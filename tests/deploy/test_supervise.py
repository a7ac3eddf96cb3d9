"""Signal forwarding with real processes: a supervisor process (run_forwarding_signals) over a
child that, like tritonserver, finishes its in-flight work after SIGTERM before exiting."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from tritonllm.deploy.supervise import run_forwarding_signals

CHILD = """\
import pathlib, signal, sys, time
out, mode = pathlib.Path(sys.argv[1]), sys.argv[2]
got = []
if mode == "ignore":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
else:
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: got.append(signum))
out.write_text("started\\n")
while not got:
    time.sleep(0.05)
with out.open("a") as f:
    f.write(f"signal {got[0]}\\n")
time.sleep(1.0)  # the request in flight completes
with out.open("a") as f:
    f.write("drained\\n")
sys.exit(3 if mode == "exit3" else 0)
"""

SUPERVISOR = ("import sys; from tritonllm.deploy.supervise import run_forwarding_signals; "
              "sys.exit(run_forwarding_signals(sys.argv[2:], kill_after_s=float(sys.argv[1])))")


def start(tmp_path, mode: str, kill_after_s: float = 30.0):
    child = tmp_path / "child.py"
    child.write_text(CHILD)
    out = tmp_path / "out.txt"
    proc = subprocess.Popen([sys.executable, "-c", SUPERVISOR, str(kill_after_s),
                             sys.executable, str(child), str(out), mode])
    deadline = time.monotonic() + 30
    while not (out.is_file() and out.read_text()):
        assert proc.poll() is None and time.monotonic() < deadline, "child did not start"
        time.sleep(0.05)
    return proc, out


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_is_forwarded_and_the_child_drains(tmp_path, sig):
    proc, out = start(tmp_path, "drain")
    proc.send_signal(sig)
    assert proc.wait(30) == 0
    assert out.read_text().splitlines() == ["started", f"signal {int(sig)}", "drained"]


def test_exit_status_is_the_childs(tmp_path):
    proc, out = start(tmp_path, "exit3")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 3
    assert out.read_text().endswith("drained\n")


def test_a_child_that_ignores_sigterm_is_killed_after_the_grace_time(tmp_path):
    proc, out = start(tmp_path, "ignore", kill_after_s=1.0)
    began = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 128 + signal.SIGKILL
    assert 1.0 <= time.monotonic() - began < 15
    assert "drained" not in out.read_text()


def test_a_second_signal_kills_at_once(tmp_path):
    proc, _ = start(tmp_path, "ignore", kill_after_s=120.0)
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    began = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 128 + signal.SIGKILL
    assert time.monotonic() - began < 10


def test_plain_exit_and_handlers_restored():
    before = signal.getsignal(signal.SIGTERM)
    assert run_forwarding_signals([sys.executable, "-c", "raise SystemExit(5)"]) == 5
    assert signal.getsignal(signal.SIGTERM) is before
