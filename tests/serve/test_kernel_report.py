"""``tritonllm serve`` says which CPU kernels the engine runs, and refuses to start when they are
required (``TRITONLLM_CPU_KERNELS=require``, as in the CPU image) but cannot be built."""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.serve.processes import serve_command
from tritonllm.engine import kernel_build
from tritonllm.serve.launcher import Ports


def test_serve_says_which_kernels_the_engine_runs(launch):
    proc, _ = launch()
    status = kernel_build.status()
    expected = f"ours ({status.isa.title}, OpenMP)" if status.library else "torch's (slower)"
    assert f"[tritonllm] CPU kernels: {expected}" in proc.startup_log


def test_required_kernels_that_cannot_be_built_stop_serve_with_the_compilers_message(tmp_path):
    compiler = tmp_path / "bad-cxx"
    compiler.write_text("#!/bin/sh\n[ \"$1\" = --version ] && { echo 'bad-cxx 2.0'; exit 0; }\n"
                        "echo 'fatal error: no headers here' >&2; exit 1\n")
    compiler.chmod(0o755)
    env = {**os.environ, "CXX": str(compiler), kernel_build.MODE_ENV: "require"}
    result = subprocess.run(serve_command(Ports.free(), tmp_path / "repo"), env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 1
    if {"avx2", "fma"} <= kernel_build.cpu_flags():
        assert "fatal error: no headers here" in result.stderr
    assert "TRITONLLM_CPU_KERNELS=require and the kernels cannot be used" in result.stderr
    assert "starting tritonserver" not in result.stderr


def test_serve_with_int4_weights_answers_through_the_ensemble(launch):
    """``--weights int4`` reaches the engine in its stub (the repository renders every engine
    setting) and the int4 kernels answer: a whole greedy reply of the asked length."""
    from tritonllm.client import Client

    if kernel_build.status().library is None:
        pytest.skip("int4 weights need our CPU kernels")
    ports = Ports.free()
    launch(0, "--weights", "int4", ports=ports)
    with Client(protocol="grpc", url=f"127.0.0.1:{ports.grpc}") as client:
        reply = client.generate("What is the capital of France?", max_tokens=12, min_tokens=12,
                                return_num_tokens=True)
    assert reply.num_output_tokens == 12 and len(reply.text.split()) >= 3, reply
