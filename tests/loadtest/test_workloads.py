"""Workload generators with the served model's real tokenizer: token counts must be exact."""

import json

import pytest

from tritonllm.loadtest.workloads import WorkloadConfig, build_prompts, parse_spec
from tritonllm.tokenizer import TextCodec


@pytest.fixture(scope="module")
def codec(model_dir):
    return TextCodec.from_dir(model_dir)


@pytest.mark.parametrize("n_in, n_out", [(1, 1), (128, 128), (1000, 16), (2048, 128)])
def test_fixed_lengths_are_exact(codec, n_in, n_out):
    prompts = build_prompts(WorkloadConfig(input_tokens=n_in, output_tokens=n_out,
                                           num_prompts=3), codec)
    for p in prompts:
        assert len(codec.encode(p.text)) == n_in == p.input_tokens
        assert list(p.token_ids) == codec.encode(p.text)
        assert p.max_tokens == p.min_tokens == n_out
    assert len({p.text for p in prompts}) == 3


def test_synthetic_lengths_follow_mean_and_stddev(codec):
    config = WorkloadConfig(input_tokens=64, input_tokens_stddev=16, output_tokens=32,
                            output_tokens_stddev=8, num_prompts=200, seed=3)
    prompts = build_prompts(config, codec)
    ins = [p.input_tokens for p in prompts]
    assert all(len(codec.encode(p.text)) == p.input_tokens for p in prompts)
    mean = sum(ins) / len(ins)
    sd = (sum((x - mean) ** 2 for x in ins) / len(ins)) ** 0.5
    assert 58 < mean < 70 and 11 < sd < 21  # 200 draws of N(64, 16)
    assert min(p.max_tokens for p in prompts) >= 1
    assert build_prompts(config, codec) == prompts  # deterministic for a seed


def test_shared_prefix_prompts_share_exact_prefixes(codec):
    config = WorkloadConfig(kind="shared_prefix", prefix_tokens=40, prefix_groups=2,
                            input_tokens=56, num_prompts=6)
    prompts = build_prompts(config, codec)
    for i, p in enumerate(prompts):
        assert len(codec.encode(p.text)) == p.input_tokens == 56
        assert p.token_ids[:40] == prompts[i % 2].token_ids[:40]
    assert prompts[0].token_ids[:40] != prompts[1].token_ids[:40]
    assert prompts[0].token_ids[40:] != prompts[2].token_ids[40:]


def test_prompt_file_with_text_and_chat_lines(codec, tmp_path):
    path = tmp_path / "p.jsonl"
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    path.write_text(json.dumps({"text": "Hello there", "max_tokens": 5}) + "\n\n"
                    + json.dumps({"messages": messages}) + "\n")
    prompts = build_prompts(parse_spec(str(path)), codec)
    assert [p.chat for p in prompts] == [False, True]
    assert prompts[0].max_tokens == 5 and prompts[0].min_tokens is None
    assert list(prompts[1].token_ids) == codec.encode_chat(prompts[1].text)
    assert json.loads(prompts[1].text) == messages


def test_prompt_file_errors_name_the_line(codec, tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "ok"}\n{"nothing": 1}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2"):
        build_prompts(parse_spec(str(path)), codec)


def test_spec_forms(tmp_path):
    assert parse_spec("128/2048") == WorkloadConfig(input_tokens=128, output_tokens=2048)
    inline = parse_spec("input_tokens=64,input_tokens_stddev=8,force_output_length=false")
    assert (inline.input_tokens, inline.input_tokens_stddev, inline.force_output_length) == (
        64, 8.0, False)
    yaml_file = tmp_path / "w.yaml"
    yaml_file.write_text("kind: file\nprompt_file: p.jsonl\noutput_tokens: 9\n")
    from_yaml = parse_spec(str(yaml_file))
    assert from_yaml.prompt_file == str(tmp_path / "p.jsonl") and from_yaml.output_tokens == 9


@pytest.mark.parametrize("spec, field", [
    ("input_tokens=0", "workload.input_tokens"), ("kind=poisson", "workload.kind"),
    ("colour=red", "unknown field"), ("input_tokens=abc", "workload.input_tokens"),
    ("kind=shared_prefix,prefix_tokens=200,input_tokens=100", "workload.prefix_tokens"),
    ("kind=file", "workload.prompt_file"), ("128x128", "key=value"),
    ("input_tokens_stddev=-1", "workload.input_tokens_stddev"),
])
def test_bad_specs_name_the_field(spec, field):
    with pytest.raises(ValueError, match=field):
        parse_spec(spec)


def test_repository_workload_files_parse():
    from tritonllm.loadtest.runner import LOADTEST_DIR

    files = sorted((LOADTEST_DIR / "workloads").glob("*.yaml"))
    assert len(files) >= 7
    for path in files:
        config = parse_spec(str(path))
        if config.prompt_file:
            assert (path.parent / config.prompt_file).is_file()


def test_json_schema_prompts_are_guided_chat_requests(codec):
    from tritonllm.loadtest.json_schemas import SCHEMA_TASKS

    config = parse_spec("kind=json_schema,output_tokens=100,force_output_length=false,"
                            "num_prompts=3")
    prompts = build_prompts(config, codec)
    assert len(prompts) == 3 and all(p.chat and p.min_tokens is None for p in prompts)
    assert prompts[0].guide == ("json_schema", json.dumps(SCHEMA_TASKS[0].schema))
    assert json.loads(prompts[0].text) == SCHEMA_TASKS[0].messages()
    assert prompts[0].token_ids == tuple(codec.encode_chat(prompts[0].text))
    with pytest.raises(ValueError, match="force_output_length: must be false for kind "
                                         "json_schema"):
        parse_spec("kind=json_schema")
