"""Engine manifests: written, read back, and every mismatch reported with its reason."""

from __future__ import annotations

import json

import pytest

from tritonllm.build.manifest import (MANIFEST_NAME, EngineManifest, check_engine_dir,
                                      check_manifest, read_manifest, write_manifest)

MANIFEST = EngineManifest(
    profile_name="llama-3.1-70b-fp8-tp4-h100", profile_hash="0123456789abcdef",
    tensorrt_llm_version="1.1.0", gpu_name="NVIDIA H100 80GB HBM3", compute_capability="9.0",
    tp_size=4, pp_size=1, dtype="bfloat16", quant_algo="FP8", kv_cache_quant_algo="FP8",
    max_batch_size=64, max_input_len=8192, max_seq_len=16384, max_num_tokens=8192,
    created="2026-11-26T10:00:00Z")


def test_round_trip(tmp_path):
    path = write_manifest(tmp_path, MANIFEST)
    assert path.name == MANIFEST_NAME
    assert read_manifest(tmp_path) == MANIFEST
    assert MANIFEST.world_size == 4


def test_matching_engine_passes():
    assert check_manifest(MANIFEST) is None
    assert check_manifest(MANIFEST, profile_hash="0123456789abcdef",
                          tensorrt_llm_version="1.1.0", compute_capability="9.0",
                          gpu_count=8) is None


@pytest.mark.parametrize("expected, fragment", [
    ({"profile_hash": "ffffffffffffffff"}, "the profile now hashes to ffffffffffffffff"),
    ({"tensorrt_llm_version": "1.3.0"}, "built with TensorRT-LLM 1.1.0 but this runtime has 1.3.0"),
    ({"compute_capability": "8.9"}, "compute capability 9.0) but this GPU has compute capability 8.9"),
    ({"gpu_count": 2}, "needs 4 GPUs (tp_size=4 x pp_size=1) but 2 are visible"),
])
def test_each_mismatch_has_a_reason(expected, fragment):
    reason = check_manifest(MANIFEST, **expected)
    assert reason is not None and fragment in reason


def test_engine_dir_without_or_with_bad_manifest(tmp_path):
    assert "does not exist" in check_engine_dir(tmp_path)
    (tmp_path / MANIFEST_NAME).write_text(json.dumps({"schema": 99}))
    assert "schema 99, expected 1" in check_engine_dir(tmp_path)
    (tmp_path / MANIFEST_NAME).write_text(json.dumps({"schema": 1, "profile_name": "x"}))
    assert "lacks" in check_engine_dir(tmp_path)
    write_manifest(tmp_path, MANIFEST)
    assert check_engine_dir(tmp_path, gpu_count=4) is None
