"""The rendered repository: every config.pbtxt parses with Triton's own protobuf, nothing is left
unfilled, and the ensemble's wiring agrees with each model's declared tensors."""

from __future__ import annotations

import dataclasses
import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as pb

from tritonllm import contract
from tritonllm.repo import backend_parameters
from tritonllm.repo.render import (GpuEngineSettings, RepoSettings, render_configs,
                                   render_repository)

CPU = RepoSettings(tokenizer_dir="/models/tok", max_input_len=1024, max_seq_len=2048,
                   cpu_engine_parameters={"model_dir": "/models/tok", "max_batch_size": "8"})
GPU = RepoSettings(tokenizer_dir="/models/tok", max_input_len=1024, max_seq_len=2048,
                   target="gpu", gpu_engine=GpuEngineSettings(
                       engine_dir="/engines/llama", enable_kv_cache_reuse=True,
                       batch_scheduler_policy="max_utilization",
                       max_tokens_in_paged_kv_cache=65536))


def parse(text: str) -> pb.ModelConfig:
    return text_format.Parse(text, pb.ModelConfig())


@pytest.mark.parametrize("settings", [CPU, GPU], ids=["cpu", "gpu"])
def test_every_config_parses_and_has_no_placeholder(settings):
    configs = render_configs(settings)
    assert set(configs) == {"preprocessing", "tensorrt_llm", "postprocessing", "ensemble"}
    for name, text in configs.items():
        assert "${" not in text, name
        cfg = parse(text)
        assert cfg.name == name
        assert cfg.max_batch_size == settings.triton_max_batch_size
        off = {p.name for p in backend_parameters.REQUIRED if "" in p.off_values}
        for key, param in cfg.parameters.items():
            assert param.string_value != "" or key in off, (name, key)


def test_engine_step_targets_the_right_backend():
    cpu = parse(render_configs(CPU)["tensorrt_llm"])
    gpu = parse(render_configs(GPU)["tensorrt_llm"])
    assert (cpu.backend, gpu.backend) == ("python", "tensorrtllm")
    assert cpu.model_transaction_policy.decoupled and gpu.model_transaction_policy.decoupled
    unary = parse(render_configs(dataclasses.replace(CPU, decoupled=False))["tensorrt_llm"])
    assert not unary.model_transaction_policy.decoupled  # decoupled_mode: false
    assert cpu.parameters["model_dir"].string_value == "/models/tok"
    assert gpu.parameters["gpt_model_path"].string_value == "/engines/llama"
    assert gpu.parameters["batch_scheduler_policy"].string_value == "max_utilization"
    assert gpu.parameters["enable_kv_cache_reuse"].string_value == "true"
    assert gpu.parameters["max_tokens_in_paged_kv_cache"].string_value == "65536"
    assert gpu.parameters["gpt_model_type"].string_value == "inflight_fused_batching"


def test_tensors_match_the_contract():
    for model in contract.MODELS:
        cfg = parse(render_configs(CPU)[model.name])
        assert [i.name for i in cfg.input] == [t.name for t in model.inputs]
        assert [o.name for o in cfg.output] == [t.name for t in model.outputs]
        for message, tensor in zip(cfg.input, model.inputs):
            assert pb.DataType.Name(message.data_type) == "TYPE_" + tensor.dtype
            assert tuple(message.dims) == tensor.dims
            assert message.optional == tensor.optional
            assert message.HasField("reshape") == (tensor.reshape is not None)


def test_reference_names_and_dtypes_are_kept():
    # Spot checks against tensorrtllm_backend's inflight_batcher_llm (TensorRT-LLM 1.1.x).
    ens, eng = contract.ENSEMBLE, contract.TENSORRT_LLM
    assert (ens.input("text_input").dtype, ens.input("max_tokens").dtype) == ("STRING", "INT32")
    assert ens.input("seed").dtype == "UINT64" and ens.input("top_p").dtype == "FP32"
    assert eng.input("stop_words_list").dims == (2, -1)
    assert eng.output("output_ids").dims == (-1, -1)
    step = {s.model_name: s for s in ens.steps}["tensorrt_llm"]
    assert step.input_map["runtime_top_k"] == "top_k"
    assert step.input_map["streaming"] == "stream"
    assert step.input_map["len_penalty"] == "length_penalty"


def test_ensemble_wiring_is_closed():
    """Every step reads tensors its model declares, from an ensemble input or an earlier step's
    output; every ensemble output is produced by some step."""
    models = {m.name: m for m in contract.MODELS}
    available = {t.name for t in contract.ENSEMBLE.inputs}
    for step in contract.ENSEMBLE.steps:
        model = models[step.model_name]
        for model_tensor, ensemble_tensor in step.input_map.items():
            model.input(model_tensor)
            assert ensemble_tensor in available, (step.model_name, ensemble_tensor)
        for model_tensor, ensemble_tensor in step.output_map.items():
            model.output(model_tensor)
            available.add(ensemble_tensor)
        required = {t.name for t in model.inputs if not t.optional}
        assert required <= set(step.input_map), (step.model_name, required - set(step.input_map))
    assert {t.name for t in contract.ENSEMBLE.outputs} <= available


def test_repository_on_disk(tmp_path):
    out = render_repository(CPU, tmp_path / "repo")
    for name in ("preprocessing", "postprocessing", "tensorrt_llm"):
        assert (out / name / "1" / "model.py").is_file()
    assert not (out / "ensemble" / "1" / "model.py").exists()
    gpu = render_repository(GPU, tmp_path / "gpu")
    assert not (gpu / "tensorrt_llm" / "1" / "model.py").exists()  # the C++ backend needs none


@pytest.mark.parametrize("kwargs, field", [
    ({"target": "tpu"}, "target"),
    ({"target": "gpu"}, "gpu_engine"),
    ({"triton_max_batch_size": 0}, "triton_max_batch_size"),
    ({"max_input_len": 4096}, "max_input_len"),
])
def test_bad_settings_name_the_field(kwargs, field):
    base = dict(tokenizer_dir="/t", max_input_len=1024, max_seq_len=2048)
    with pytest.raises(ValueError, match=field):
        RepoSettings(**{**base, **kwargs})


def test_bad_gpu_settings_name_the_field():
    with pytest.raises(ValueError, match="batch_scheduler_policy"):
        GpuEngineSettings(engine_dir="/e", batch_scheduler_policy="fifo")
    with pytest.raises(ValueError, match="kv_cache_free_gpu_mem_fraction"):
        GpuEngineSettings(engine_dir="/e", kv_cache_free_gpu_mem_fraction=1.5)


def test_gpu_queue_policy_bounds_the_queue():
    # Triton's default_queue_policy: the excess gets UNAVAILABLE "Exceeds maximum queue size"
    # (and TensorRT-LLM's executor reads the same limit).
    bounded = dataclasses.replace(GPU, gpu_engine=dataclasses.replace(GPU.gpu_engine,
                                                                      max_queue_size=64))
    cfg = parse(render_configs(bounded)["tensorrt_llm"])
    assert cfg.dynamic_batching.default_queue_policy.max_queue_size == 64
    unbounded = parse(render_configs(GPU)["tensorrt_llm"])
    assert not unbounded.dynamic_batching.HasField("default_queue_policy")


@pytest.mark.parametrize("settings", [CPU, GPU], ids=["cpu", "gpu"])
def test_the_engine_gets_the_cancellation_check_period(settings):
    """One key for both engines: TensorRT-LLM's backend reads it, and so does the CPU step."""
    configs = {name: parse(text) for name, text in render_configs(
        dataclasses.replace(settings, cancellation_check_period_ms=20)).items()}
    assert configs["tensorrt_llm"].parameters["cancellation_check_period_ms"].string_value == "20"
    with pytest.raises(ValueError, match="cancellation_check_period_ms: must be >= 1, got 0"):
        dataclasses.replace(settings, cancellation_check_period_ms=0)


def test_postprocessing_scales_in_order_and_the_engine_gets_stream_interval():
    scaled = dataclasses.replace(CPU, postprocessing_instances=3, preprocessing_instances=2,
                                 stream_interval=4)
    configs = {name: parse(text) for name, text in render_configs(scaled).items()}
    post = configs["postprocessing"]
    assert post.instance_group[0].count == 3 and post.dynamic_batching.preserve_ordering
    assert configs["preprocessing"].instance_group[0].count == 2
    assert configs["tensorrt_llm"].parameters["stream_interval"].string_value == "4"
    wiring = {step.model_name: step for step in configs["ensemble"].ensemble_scheduling.step}
    assert wiring["tensorrt_llm"].output_map["preceding_ids"] == "_PRECEDING_IDS"
    assert wiring["postprocessing"].input_map["PRECEDING_IDS"] == "_PRECEDING_IDS"


def test_the_cpu_step_sends_delivery_tickets_that_postprocessing_acknowledges():
    configs = {name: parse(text) for name, text in render_configs(
        dataclasses.replace(CPU, abandoned_stream_timeout_ms=900)).items()}
    engine = configs["tensorrt_llm"]
    assert engine.parameters["abandoned_stream_timeout_ms"].string_value == "900"
    assert "delivery_ticket" in {o.name for o in engine.output}
    assert "DELIVERY_TICKET" in {i.name for i in configs["postprocessing"].input}
    wiring = {step.model_name: step for step in configs["ensemble"].ensemble_scheduling.step}
    assert wiring["tensorrt_llm"].output_map["delivery_ticket"] == "_DELIVERY_TICKET"
    assert wiring["postprocessing"].input_map["DELIVERY_TICKET"] == "_DELIVERY_TICKET"
    with pytest.raises(ValueError, match="abandoned_stream_timeout_ms: must be >= 0"):
        dataclasses.replace(CPU, abandoned_stream_timeout_ms=-1)


def test_gpu_engine_neither_declares_nor_wires_the_cpu_steps_outputs():
    # TensorRT-LLM's tensorrtllm backend sends neither (postprocessing then keeps state).
    configs = render_configs(GPU)
    for name in ("preceding_ids", "delivery_ticket", "abandoned_stream_timeout_ms"):
        assert name not in configs["tensorrt_llm"]
    assert "PRECEDING_IDS" not in configs["ensemble"]
    assert "DELIVERY_TICKET" not in configs["ensemble"]
    with pytest.raises(ValueError, match="stream_interval: TensorRT-LLM 1.1.0's tensorrtllm"):
        dataclasses.replace(GPU, stream_interval=2)
    with pytest.raises(ValueError, match="postprocessing_instances: streamed text is exact"):
        dataclasses.replace(GPU, postprocessing_instances=2)
    unary = dataclasses.replace(GPU, decoupled=False, postprocessing_instances=2)
    assert parse(render_configs(unary)["postprocessing"]).instance_group[0].count == 2


def test_limits_are_checked_as_the_engine_and_profile_check_them():
    """One rule (tritonllm.limits): a prompt as long as the sequence leaves no room to generate."""
    with pytest.raises(ValueError, match=r"max_input_len: 2048 must be < max_seq_len \(2048\)"):
        dataclasses.replace(CPU, max_input_len=2048)
