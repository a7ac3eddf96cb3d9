"""Build profiles: the shipped YAML files load, defaults come from the dataclass, bad input is
rejected naming the field and the limit, hashes follow content."""

from __future__ import annotations

from pathlib import Path

import pytest

from tritonllm.build.profile import (BuildProfile, LimitsSpec, engine_hash, from_dict,
                                     load_profile, profile_hash, stage_hash)

PROFILES = Path(__file__).resolve().parents[2] / "build"
SHIPPED = ["smollm2-cpu", "llama-3.1-8b-fp8-h100", "llama-3.1-70b-fp8-tp4-h100",
           "llama-3.1-70b-int4awq-tp2-h100", "llama-3.2-1b-int8wo-l4"]


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_profiles_load(name):
    profile = load_profile(PROFILES / f"{name}.yaml")
    assert profile.name == name
    assert profile.source.endswith(f"{name}.yaml")


def test_shipped_profiles_say_what_the_issue_asks():
    p = {n: load_profile(PROFILES / f"{n}.yaml") for n in SHIPPED}
    assert (p["llama-3.1-8b-fp8-h100"].quantization.mode, p["llama-3.1-8b-fp8-h100"].target.gpu,
            p["llama-3.1-8b-fp8-h100"].parallel.tp_size) == ("fp8", "H100", 1)
    assert p["llama-3.1-70b-fp8-tp4-h100"].parallel.tp_size == 4
    awq = p["llama-3.1-70b-int4awq-tp2-h100"]
    assert (awq.quantization.mode, awq.parallel.tp_size) == ("int4_awq", 2)
    l4 = p["llama-3.2-1b-int8wo-l4"]
    assert (l4.quantization.mode, l4.target.gpu) == ("int8_wo", "L4")
    assert p["smollm2-cpu"].target.gpu == "cpu"


def test_missing_keys_take_the_dataclass_defaults():
    profile = from_dict({"name": "bare"})
    assert profile.limits == LimitsSpec()
    assert profile.dtype == BuildProfile.__dataclass_fields__["dtype"].default
    assert profile.triton_max_batch_size == LimitsSpec().max_batch_size


@pytest.mark.parametrize("data, message", [
    ({"name": "x", "limit": {}}, "limit: unknown key; allowed: name, model"),
    ({"name": "x", "limits": {"max_batch": 3}}, "limits.max_batch: unknown key"),
    ({"name": "x", "limits": {"max_seq_len": "4k"}}, "limits.max_seq_len: expected int"),
    ({"name": "x", "limits": {"max_batch_size": True}}, "limits.max_batch_size: expected int"),
    ({"name": "x", "limits": {"max_batch_size": 0}}, "limits.max_batch_size: must be >= 1, got 0"),
    ({"name": "x", "limits": {"max_input_len": 4096, "max_seq_len": 4096}},
     "limits.max_input_len: 4096 must be < max_seq_len (4096)"),
    ({"name": "x", "limits": {"max_batch_size": 64, "max_num_tokens": 32}},
     "limits.max_num_tokens: 32 must be >= max_batch_size (64)"),
    ({"name": "x", "dtype": "fp16"}, "dtype: 'fp16' is not one of"),
    ({"name": "x", "quantization": {"mode": "int3"}}, "quantization.mode: unknown 'int3'"),
    ({"name": "x", "quantization": {"kv_cache": "fp4"}}, "quantization.kv_cache: 'fp4'"),
    ({"name": "x", "quantization": {"group_size": 100}},
     "quantization.group_size: 100 is not one of (32, 64, 128)"),
    ({"name": "x", "quantization": {"smoothquant_alpha": 1.5}},
     "quantization.smoothquant_alpha: must be in [0, 1]"),
    ({"name": "x", "parallel": {"tp_size": 0}}, "parallel.tp_size: must be >= 1"),
    ({"name": "x", "target": {"gpu": "V100"}}, "target.gpu: unknown device 'V100'"),
    ({"name": "x", "engine": {"gemm_plugin": "int8"}}, "engine.gemm_plugin: 'int8'"),
    ({"name": "x", "engine": {"tokens_per_block": 48}}, "engine.tokens_per_block: must be a"),
    ({"name": "x", "serving": {"kv_cache_free_gpu_mem_fraction": 1.2}},
     "serving.kv_cache_free_gpu_mem_fraction: must be in (0, 1]"),
    ({"name": "x", "serving": {"batch_scheduler_policy": "fifo"}},
     "serving.batch_scheduler_policy: 'fifo'"),
    ({"name": "bad name"}, "name: must be non-empty"),
    ({"name": "x", "parallel": 2}, "parallel: expected a mapping"),
])
def test_bad_values_name_the_field_and_the_limit(data, message):
    with pytest.raises(ValueError) as error:
        from_dict(data)
    assert message in str(error.value)


def test_overrides_and_file_errors(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("name: p\nparallel: {tp_size: 1}\n")
    profile = load_profile(path, ["parallel.tp_size=3", "quantization.mode=int8_sq"])
    assert profile.parallel.tp_size == 3 and profile.quantization.mode == "int8_sq"
    with pytest.raises(ValueError, match="--set: expected section.key=value"):
        load_profile(path, ["parallel.tp_size"])
    with pytest.raises(ValueError, match="parallel.tp_size: must be >= 1"):
        load_profile(path, ["parallel.tp_size=0"])
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_profile(tmp_path / "absent.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n")
    with pytest.raises(ValueError, match="must hold a mapping"):
        load_profile(tmp_path / "list.yaml")


def test_hashes_follow_content_not_the_file():
    a = from_dict({"name": "h", "source": "/one.yaml"})
    b = from_dict({"name": "h", "source": "/two.yaml"})
    assert profile_hash(a) == profile_hash(b)
    served = from_dict({"name": "h", "serving": {"enable_kv_cache_reuse": False}})
    assert profile_hash(served) != profile_hash(a)
    # A serving option changes the repository stage only: no re-quantization, no rebuild.
    assert stage_hash(served, "quantize") == stage_hash(a, "quantize")
    assert engine_hash(served) == engine_hash(a)
    assert stage_hash(served, "repo") != stage_hash(a, "repo")
    # ... unless it decides a build flag: without reuse and chunked context, no paged context FMHA
    plain = from_dict({"name": "h", "serving": {"enable_kv_cache_reuse": False,
                                                "enable_chunked_context": False}})
    assert not plain.use_paged_context_fmha and a.use_paged_context_fmha
    assert engine_hash(plain) != engine_hash(a)
    limited = from_dict({"name": "h", "limits": {"max_batch_size": 8}})
    assert stage_hash(limited, "quantize") == stage_hash(a, "quantize")
    assert engine_hash(limited) != engine_hash(a)


def test_output_path_defaults_to_the_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("TRITONLLM_CACHE", str(tmp_path))
    assert from_dict({"name": "n"}).output_path == tmp_path / "builds" / "n"
    monkeypatch.setenv("OUT_ROOT", str(tmp_path / "o"))
    assert from_dict({"name": "n", "output_dir": "$OUT_ROOT/x"}).output_path == tmp_path / "o/x"
