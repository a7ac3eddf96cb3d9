"""Prompt pools: built once in a child process, cached by content, read back exactly."""

import pytest

from tritonllm.loadtest.pool import ensure_pool, pool_path, read_pool
from tritonllm.loadtest.workloads import WorkloadConfig, build_prompts
from tritonllm.tokenizer import TextCodec


def test_pool_round_trip_through_a_child_process(model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("TRITONLLM_CACHE", str(tmp_path))
    config = WorkloadConfig(input_tokens=24, output_tokens=6, num_prompts=4, seed=5)
    path = ensure_pool(config, model_dir)
    assert path == pool_path(config, model_dir) and path.is_relative_to(tmp_path)
    prompts, end_id = read_pool(path)
    codec = TextCodec.from_dir(model_dir)
    assert prompts == build_prompts(config, codec)
    assert end_id == codec.end_id
    mtime = path.stat().st_mtime_ns
    assert ensure_pool(config, model_dir).stat().st_mtime_ns == mtime  # cached
    assert pool_path(WorkloadConfig(input_tokens=25), model_dir) != path


def test_guided_prompts_keep_their_guide_through_the_pool(model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("TRITONLLM_CACHE", str(tmp_path))
    config = WorkloadConfig(kind="json_schema", output_tokens=50, force_output_length=False,
                            num_prompts=2)
    prompts, _ = read_pool(ensure_pool(config, model_dir))
    assert prompts == build_prompts(config, TextCodec.from_dir(model_dir))
    assert all(p.guide and p.guide[0] == "json_schema" for p in prompts)


def test_pool_build_errors_surface(model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("TRITONLLM_CACHE", str(tmp_path))
    bad = tmp_path / "bad.jsonl"
    bad.write_text("not json\n")
    config = WorkloadConfig(kind="file", prompt_file=str(bad))
    with pytest.raises(ValueError, match="bad.jsonl:1"):
        ensure_pool(config, model_dir)
