"""World size and tritonserver/mpirun command lines for tp/pp combinations (leader mode, as
TensorRT-LLM 1.1.x's triton_backend/scripts/launch_triton_server.py builds them)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tritonllm.deploy.launch import TRITONSERVER, LaunchSpec, host_slots
from tritonllm.serve.launcher import Ports

COMBOS = [(1, 1), (2, 1), (4, 1), (8, 1), (1, 2), (2, 2), (4, 2), (8, 2)]


def app_contexts(argv: list[str]) -> list[list[str]]:
    """Split an MPMD mpirun command into its ``-n 1 tritonserver ...`` contexts."""
    contexts, current = [], []
    for arg in argv[argv.index("-n"):]:
        if arg == ":":
            contexts.append(current)
            current = []
        else:
            current.append(arg)
    return contexts + [current]


def test_two_gpus_exact_command_line():
    spec = LaunchSpec(model_repository="/repo", tp_size=2)
    common = [TRITONSERVER, "--model-repository=/repo", "--exit-timeout-secs=60",
              "--grpc-port=8001", "--http-port=8000", "--metrics-port=8002"]
    assert spec.command() == [
        "mpirun", "--allow-run-as-root",
        "-n", "1", *common, "--disable-auto-complete-config",
        "--backend-config=python,shm-region-prefix-name=prefix0_", ":",
        "-n", "1", *common, "--model-control-mode=explicit", "--load-model=tensorrt_llm",
        "--disable-auto-complete-config",
        "--backend-config=python,shm-region-prefix-name=prefix1_"]


@pytest.mark.parametrize("tp,pp", COMBOS)
def test_one_rank_per_gpu(tp, pp):
    spec = LaunchSpec(model_repository="/repo", tp_size=tp, pp_size=pp,
                      ports=Ports(9000, 9001, 9002))
    assert spec.world_size == tp * pp
    argv = spec.command()
    if tp * pp == 1:  # no MPI: the server alone, so signals reach it directly
        assert argv[0] == TRITONSERVER and "mpirun" not in argv
        return
    assert argv[:2] == ["mpirun", "--allow-run-as-root"] and argv.count("mpirun") == 1
    contexts = app_contexts(argv)
    assert len(contexts) == tp * pp
    for rank, ctx in enumerate(contexts):
        assert ctx[:3] == ["-n", "1", TRITONSERVER]
        assert f"--backend-config=python,shm-region-prefix-name=prefix{rank}_" in ctx
        assert {"--http-port=9000", "--grpc-port=9001", "--metrics-port=9002"} <= set(ctx)
        explicit = {"--model-control-mode=explicit", "--load-model=tensorrt_llm"}
        # rank 0 serves the whole repository; the others load only the engine
        assert explicit.isdisjoint(ctx) if rank == 0 else explicit <= set(ctx)


def test_mpirun_kill_delay_covers_the_drain():
    spec = LaunchSpec(model_repository="/r", tp_size=4, exit_timeout_s=90)
    env = spec.env({"PATH": "/bin"})
    assert env["OMPI_MCA_odls_base_sigkill_timeout"] == "90" and env["PATH"] == "/bin"
    assert spec.stop_timeout_s >= 2 * 90
    single = LaunchSpec(model_repository="/r", exit_timeout_s=90)
    assert "OMPI_MCA_odls_base_sigkill_timeout" not in single.env({})
    assert single.stop_timeout_s > 90


def test_multinode_hosts_and_agent():
    spec = LaunchSpec(model_repository="/r", tp_size=4, pp_size=2,
                      hosts=("lws-0:4", "lws-0-1:4"), rsh_agent="tritonllm-kubectl-rsh")
    argv = spec.command()
    head = argv[:argv.index("-n")]
    assert head == ["mpirun", "--allow-run-as-root", "--host", "lws-0:4,lws-0-1:4",
                    "--mca", "plm_rsh_agent", "tritonllm-kubectl-rsh"]
    assert len(app_contexts(argv)) == 8


def test_log_file_only_on_rank_zero():
    spec = LaunchSpec(model_repository="/r", tp_size=2, log_file="/logs/triton.log")
    first, second = app_contexts(spec.command())
    assert "--log-file=/logs/triton.log" in first and not any("log-file" in a for a in second)


@pytest.mark.parametrize("kwargs,field", [
    (dict(tp_size=0), "tp_size"),
    (dict(pp_size=-1), "pp_size"),
    (dict(exit_timeout_s=-5), "exit_timeout_s"),
    (dict(tp_size=8, hosts=("a:4",)), "hosts"),
    (dict(hosts=("a:1",)), "hosts"),
    (dict(tp_size=2, hosts=("a:x",)), "hosts"),
])
def test_bad_specs_name_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        LaunchSpec(model_repository="/r", **kwargs)


def test_host_slots():
    assert host_slots(("a:4", "b:4", "c")) == 9


def test_an_admin_key_closes_the_admin_apis_on_every_rank():
    spec = LaunchSpec(model_repository="/r", tp_size=2, admin_key="k3y")
    for rank in (0, 1):
        argv = spec.rank_args(rank)
        assert ("--http-restricted-api=shared-memory,model-repository,logging,trace:"
                "triton-admin-key=k3y") in argv
        assert ("--grpc-restricted-protocol=shared-memory,model-repository,logging,trace:"
                "triton-admin-key=k3y") in argv
    assert not any("restricted" in a for a in LaunchSpec(model_repository="/r").rank_args(0))


# --- the launch run as a server ---------------------------------------------------------------

def test_a_launch_spec_starts_serves_and_stops(tmp_path, model_dir):
    """Rank 0's exact command line (the GPU image's, through a shim that adds this machine's
    backend directory) over the CPU twin's repository: ready, answering, then stopped."""
    from tests.helpers import tritonserver_shim
    from tritonllm.deploy.launch import LaunchedServer
    from tritonllm.serve.cpu import CpuDeployment
    from tritonllm.serve.launcher import http_ok, server_env

    repo = CpuDeployment(model=str(model_dir), repo_dir=tmp_path / "repo").prepare()
    spec = LaunchSpec(model_repository=str(repo), ports=Ports.free(), exit_timeout_s=5,
                      tritonserver=str(tritonserver_shim(tmp_path)))
    server = LaunchedServer(spec, log_file=tmp_path / "server.log", env=server_env())
    assert server.stop_timeout_s == spec.stop_timeout_s
    with server:
        argv = (Path("/proc") / str(server.pid) / "cmdline").read_text().split("\0")[:-1]
        arguments = spec.command()[1:]
        assert argv[-len(arguments):] == arguments  # after the shim's own
        assert http_ok(f"http://{server.http_url}/v2/models/ensemble/ready")
    assert server.process is None and not http_ok(f"http://{server.http_url}/v2/health/live")


def test_a_missing_server_binary_is_a_launch_error(tmp_path):
    from tritonllm.deploy.launch import LaunchedServer
    from tritonllm.serve.launcher import LaunchError

    spec = LaunchSpec(model_repository=str(tmp_path), ports=Ports.free(),
                      tritonserver=str(tmp_path / "no-tritonserver"))
    with pytest.raises(LaunchError, match="cannot run .*no-tritonserver: No such file"):
        LaunchedServer(spec, log_file=tmp_path / "server.log").start(timeout_s=5)
