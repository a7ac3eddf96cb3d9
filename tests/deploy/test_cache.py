"""Engine cache decisions from manifests on disk: reuse, build, rebuild; the cache lock; the
entrypoint's build-then-serve preparation.

TensorRT-LLM and GPUs do not exist here, so where the entrypoint runs ``tritonllm build`` these
tests run a stand-in builder: a real process, invoked with the same arguments, that writes what
the engine stage writes on a GPU node (``engine/config.json``, ``rank<N>.engine`` and the
manifest made by ``tritonllm.build.engine.make_manifest``) and counts its runs.
"""

from __future__ import annotations

import functools
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as pb

from tritonllm.gpu_stack import TENSORRT_LLM_VERSION
from tritonllm.build.engine import make_manifest
from tritonllm.build.manifest import MANIFEST_NAME, write_manifest
from tritonllm.build.profile import engine_hash, load_profile
from tritonllm.deploy import cache
from tritonllm.deploy.entrypoint import (DeployError, EntrypointOptions, plan_gpu,
                                         prepare_engine)
from tritonllm.deploy.node import NodeFacts
from tritonllm.model_source import default_model_dir

PROFILE = """\
name: cache-test
model: {{dir: /models/Llama-3.1-8B-Instruct, architecture: llama-3.1-8b,
        tokenizer_dir: {tokenizer}}}
dtype: bfloat16
quantization: {{mode: fp8, kv_cache: fp8}}
parallel: {{tp_size: {tp}, pp_size: 1}}
limits: {{max_batch_size: {batch}, max_input_len: 2048, max_seq_len: 4096, max_num_tokens: 8192}}
target: {{gpu: H100}}
"""
H100 = NodeFacts(TENSORRT_LLM_VERSION, "NVIDIA H100 80GB HBM3", "9.0", 2)

BUILDER = """\
import os, pathlib, sys
from tritonllm.build.engine import make_manifest
from tritonllm.build.manifest import write_manifest
from tritonllm.build.profile import load_profile
profile_file, flag, out = sys.argv[1:4]
assert flag == "--output-dir"
runs = pathlib.Path(os.environ["BUILD_RUNS"])
runs.write_text(str(int(runs.read_text() or 0) + 1) if runs.exists() else "1")
if os.environ.get("BUILD_FAIL"):
    sys.exit(1)
profile = load_profile(profile_file)
engine = pathlib.Path(out) / "engine"
engine.mkdir(parents=True, exist_ok=True)
(engine / "config.json").write_text("{}")
for rank in range(profile.parallel.world_size):
    (engine / f"rank{rank}.engine").write_bytes(b"engine")
version = os.environ.get("BUILD_TRTLLM", "1.1.0")
write_manifest(engine, make_manifest(profile, version, "NVIDIA H100 80GB HBM3", "9.0"))
"""


@functools.cache
def tokenizer_dir() -> Path:
    """A real tokenizer (the default model's; the repository stage writes its tokenizer info),
    found in the user's cache before a test points ``TRITONLLM_CACHE`` elsewhere."""
    return default_model_dir()


def write_profile(path, tp=1, batch=64):
    path.write_text(PROFILE.format(tp=tp, batch=batch, tokenizer=tokenizer_dir()))
    return load_profile(path)


def engine_on_disk(engine_dir, profile, version="1.1.0", cc="9.0", ranks=None):
    engine_dir.mkdir(parents=True, exist_ok=True)
    (engine_dir / "config.json").write_text("{}")
    for rank in range(profile.parallel.world_size if ranks is None else ranks):
        (engine_dir / f"rank{rank}.engine").write_bytes(b"x")
    write_manifest(engine_dir, make_manifest(profile, version, "NVIDIA H100 80GB HBM3", cc))


def decide(build_dir, profile, version="1.1.0", cc="9.0"):
    return cache.decide(build_dir, profile_hash=engine_hash(profile),
                        tensorrt_llm_version=version, compute_capability=cc,
                        world_size=profile.parallel.world_size)


# --- decisions --------------------------------------------------------------------------------

def test_miss_hit_and_rebuild_for_a_changed_profile(tmp_path):
    profile = write_profile(tmp_path / "p.yaml", tp=2)
    build_dir = tmp_path / "build"
    assert decide(build_dir, profile).action == cache.BUILD
    engine_on_disk(build_dir / "engine", profile)
    hit = decide(build_dir, profile)
    assert hit.action == cache.REUSE and hit.engine_dir == build_dir / "engine"
    changed = write_profile(tmp_path / "p.yaml", tp=2, batch=32)  # a limit: new engine hash
    stale = decide(build_dir, changed)
    assert stale.action == cache.REBUILD and engine_hash(changed) in stale.reason


@pytest.mark.parametrize("version,cc,needle", [("1.0.0", "9.0", "TensorRT-LLM 1.0.0"),
                                               ("1.1.0", "8.9", "compute capability")])
def test_engine_from_another_version_or_gpu_is_rebuilt(tmp_path, version, cc, needle):
    profile = write_profile(tmp_path / "p.yaml")
    engine_on_disk(tmp_path / "build" / "engine", profile, version=version, cc=cc)
    decision = decide(tmp_path / "build", profile)
    assert decision.action == cache.REBUILD and needle in decision.reason


def test_missing_rank_engine_or_bad_manifest_is_rebuilt(tmp_path):
    profile = write_profile(tmp_path / "p.yaml", tp=2)
    engine_dir = tmp_path / "build" / "engine"
    engine_on_disk(engine_dir, profile, ranks=1)
    assert "lacks rank1.engine" in decide(tmp_path / "build", profile).reason
    (engine_dir / "rank1.engine").write_bytes(b"x")
    data = json.loads((engine_dir / MANIFEST_NAME).read_text())
    (engine_dir / MANIFEST_NAME).write_text(json.dumps({**data, "schema": 99}))
    decision = decide(tmp_path / "build", profile)
    assert decision.action == cache.REBUILD and "schema 99" in decision.reason


def test_two_manifests_are_refused(tmp_path):
    profile = write_profile(tmp_path / "p.yaml")
    engine_on_disk(tmp_path / "build" / "a", profile)
    engine_on_disk(tmp_path / "build" / "b", profile)
    with pytest.raises(ValueError, match="several engine manifests"):
        decide(tmp_path / "build", profile)


def test_discard_removes_only_the_stale_engine(tmp_path):
    profile = write_profile(tmp_path / "p.yaml")
    engine_on_disk(tmp_path / "build" / "engine", profile, version="1.0.0")
    (tmp_path / "build" / "checkpoint").mkdir()
    cache.discard(decide(tmp_path / "build", profile))
    assert not (tmp_path / "build" / "engine").exists()
    assert (tmp_path / "build" / "checkpoint").is_dir()


def test_a_new_version_builds_beside_the_old_engines(tmp_path):
    profile = write_profile(tmp_path / "p.yaml")
    old = cache.engine_root(tmp_path, profile.name, "1.1.0rc5", "sm90") / "build"
    new = cache.engine_root(tmp_path, profile.name, "1.1.0", "sm90") / "build"
    engine_on_disk(old / "engine", profile, version="1.1.0rc5")
    assert old != new
    assert decide(new, profile).action == cache.BUILD
    assert decide(old, profile, version="1.1.0rc5").action == cache.REUSE  # rollback still works


# --- lock -------------------------------------------------------------------------------------

def test_exclusive_lock_serializes_processes(tmp_path):
    lock, released = tmp_path / ".lock", tmp_path / "released"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import pathlib, sys, time; from tritonllm.deploy.cache import exclusive\n"
        f"with exclusive(pathlib.Path({str(lock)!r})):\n"
        "    print('held', flush=True); time.sleep(1.5)\n"
        f"    pathlib.Path({str(released)!r}).write_text(repr(time.time()))\n")],
        stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    with cache.exclusive(lock, poll_s=0.1):
        acquired = time.time()
    assert holder.wait(30) == 0
    assert acquired >= float(released.read_text())


# --- build, then serve ------------------------------------------------------------------------

@pytest.fixture
def builder(tmp_path, monkeypatch):
    script = tmp_path / "builder.py"
    script.write_text(BUILDER)
    runs = tmp_path / "runs"
    monkeypatch.setenv("BUILD_RUNS", str(runs))
    tokenizer_dir()
    monkeypatch.setenv("TRITONLLM_CACHE", str(tmp_path / "cache"))
    return (sys.executable, str(script)), runs


def plan(profile, facts=H100):
    return plan_gpu(profile, facts, EntrypointOptions(), env={})


def engine_model_config(repo_dir) -> pb.ModelConfig:
    text = (repo_dir / "tensorrt_llm" / "config.pbtxt").read_text()
    return text_format.Parse(text, pb.ModelConfig())


def test_build_once_then_reuse_then_rebuild(tmp_path, builder):
    command, runs = builder
    profile = write_profile(tmp_path / "p.yaml", tp=2)
    first = plan(profile)
    assert first.decision.action == cache.BUILD
    assert first.root == tmp_path / "cache" / "engines" / "cache-test" / "trtllm-1.1.0-sm90"
    engine_dir = prepare_engine(first, command)
    assert runs.read_text() == "1" and (engine_dir / "rank1.engine").is_file()
    config = engine_model_config(first.repo_dir)
    assert config.backend == "tensorrtllm"
    assert config.parameters["gpt_model_path"].string_value == str(engine_dir)
    assert config.max_batch_size == profile.triton_max_batch_size
    info = config.parameters["xgrammar_tokenizer_info_path"].string_value
    assert info == str(engine_dir / "xgrammar_tokenizer_info.json")
    assert set(json.loads(Path(info).read_text())) == {"encoded_vocab", "tokenizer_str",
                                                       "stop_token_ids"}

    again = plan(profile)
    assert again.decision.action == cache.REUSE
    assert prepare_engine(again, command) == engine_dir and runs.read_text() == "1"

    changed = write_profile(tmp_path / "p.yaml", tp=2, batch=32)
    third = plan(changed)
    assert third.decision.action == cache.REBUILD
    prepare_engine(third, command)
    assert runs.read_text() == "2" and plan(changed).decision.action == cache.REUSE
    assert engine_model_config(third.repo_dir).max_batch_size == 32


def test_failed_or_unusable_build_is_an_error(tmp_path, builder, monkeypatch):
    command, _ = builder
    profile = write_profile(tmp_path / "p.yaml")
    monkeypatch.setenv("BUILD_FAIL", "1")
    with pytest.raises(DeployError, match="build failed with status 1"):
        prepare_engine(plan(profile), command)
    monkeypatch.delenv("BUILD_FAIL")
    monkeypatch.setenv("BUILD_TRTLLM", "1.0.0")  # built by another version than this node's
    with pytest.raises(DeployError, match="cannot be used: .*TensorRT-LLM 1.0.0"):
        prepare_engine(plan(profile), command)
