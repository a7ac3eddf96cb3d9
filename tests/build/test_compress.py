"""Compression mechanics on tiny random Llamas: pruning keeps exactly the right weights,
importance finds planted dead layers and channels, 2:4 sparsity holds its pattern, distillation
resumes to the same weights, and the compress stage feeds quantize, the planner, the engine
command and the CPU twin (greedy output equal to transformers on the student)."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from tests.engine.engine_helpers import hf_greedy, tiny_llama

from tritonllm.build.compression import distill_data, prune, sparsity
from tritonllm.build.compression.distill import PROGRESS, distill
from tritonllm.build.profile import CompressionSpec, DistillSpec, from_dict

IDS = torch.randint(3, 300, (1, 24), generator=torch.Generator().manual_seed(1))


def _logits(model, ids=IDS):
    with torch.no_grad():
        return model(ids, use_cache=False).logits


@pytest.mark.parametrize("fields, message", [
    ({"depth": 1.0}, "compression.depth: must be in [0, 1)"),
    ({"mlp": -0.1}, "compression.mlp: must be in [0, 1)"),
    ({"sparsity": "4:8"}, "compression.sparsity: '4:8' is not one of"),
    ({"sparsity_method": "wanda"}, "compression.sparsity_method"),
    ({"distill": {"intermediate_weight": 1.0}}, "compression.distill.intermediate_weight"),
    ({"distill": {"lr": 0}}, "compression.distill.lr: must be > 0"),
])
def test_bad_compression_settings_name_the_field(fields, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace(")", r"\)")):
        from_dict({"name": "x", "compression": fields})


def test_a_cut_that_transformers_cannot_load_is_refused():
    # 4 heads in 2 KV groups, hidden 64: dropping a group leaves 2 heads (fine); 9 heads in 3
    # groups with hidden 64 would leave 6, which does not divide 64
    assert prune.kept_kv_groups(2, 1, 4, 64) == 1
    with pytest.raises(ValueError, match="compression.kv_groups: 1 leaves 6 query heads"):
        prune.kept_kv_groups(3, 1, 9, 64)


def test_pruned_student_computes_what_the_teacher_computes_without_the_cut_parts():
    teacher = tiny_llama(num_hidden_layers=3)  # 4 heads, 2 KV groups, MLP 128
    plan = prune.PrunePlan(layers=(0, 2), mlp_channels=(tuple(range(0, 128, 2)),
                                                         tuple(range(64, 128))),
                           kv_groups=((1,), (0,)))
    student = prune.apply_plan(teacher, plan)
    assert (student.config.num_hidden_layers, student.config.intermediate_size,
            student.config.num_attention_heads, student.config.num_key_value_heads) == (2, 64, 2, 1)
    # the teacher with layer 1 skipped and the dropped channels' / heads' outputs zeroed
    same = copy.deepcopy(teacher)
    head_dim = teacher.config.hidden_size // teacher.config.num_attention_heads
    for old, channels, groups in zip(plan.layers, plan.mlp_channels, plan.kv_groups):
        layer = same.model.layers[old]
        dropped = sorted(set(range(128)) - set(channels))
        layer.mlp.down_proj.weight.data[:, dropped] = 0
        for group in set(range(2)) - set(groups):  # 2 query heads per group
            layer.self_attn.o_proj.weight.data[:, group * 2 * head_dim:(group + 1) * 2 * head_dim] = 0
    same.model.layers = torch.nn.ModuleList(same.model.layers[i] for i in plan.layers)
    torch.testing.assert_close(_logits(student), _logits(same), atol=1e-5, rtol=1e-5)


def test_importance_finds_a_dead_layer_dead_channels_and_a_dead_kv_group():
    model = tiny_llama(num_hidden_layers=3)
    with torch.no_grad():
        dead = model.model.layers[1]  # adds nothing to the residual stream
        dead.self_attn.o_proj.weight.zero_()
        dead.mlp.down_proj.weight.zero_()
        for layer in (model.model.layers[0], model.model.layers[2]):
            layer.mlp.down_proj.weight[:, :32] = 0  # channels 0..31 reach nothing
            layer.self_attn.o_proj.weight[:, 32:] = 0  # KV group 1's heads (2, 3) reach nothing
    plan = prune.make_plan(model, [IDS], depth=0.34, mlp=0.25, kv_drop=1)
    assert plan.layers == (0, 2)
    assert all(set(c).isdisjoint(range(32)) and len(c) == 96 for c in plan.mlp_channels)
    assert plan.kv_groups == ((0,), (0,))


@pytest.mark.parametrize("method", ["sparse_magnitude", "sparsegpt"])
def test_two_four_sparsity_zeroes_half_of_every_decoder_linear_weight(method):
    from tritonllm.build.compression.compress import parameter_count

    model = tiny_llama(tie_word_embeddings=True)
    lm_head, params = model.lm_head.weight.clone(), parameter_count(model)
    out = sparsity.sparsify(model, method, [IDS])
    assert parameter_count(out) == params  # the embedding is still tied
    weights = sparsity.decoder_linear_weights(out)
    assert len(weights) == 2 * 7
    for name, weight in weights.items():
        assert sparsity.is_two_four(weight), name
        assert (weight == 0).float().mean().item() >= 0.5, name
    assert torch.equal(out.lm_head.weight, lm_head)  # left dense
    assert not sparsity.is_two_four(lm_head)


def _student_and_teacher():
    teacher = tiny_llama(num_hidden_layers=3)
    plan = prune.PrunePlan((0, 2), (tuple(range(128)),) * 2, ((0, 1),) * 2)
    return prune.apply_plan(teacher, plan), teacher


def test_distillation_resumes_to_the_weights_of_an_uninterrupted_run(tmp_path):
    ids = torch.randint(3, 300, (25, 16), generator=torch.Generator().manual_seed(2))
    spec = DistillSpec(max_steps=4, batch_size=2, seq_len=16, lr=1e-3, checkpoint_every=2,
                       intermediate_weight=0.25)
    layer_map = {0: 0, 1: 2}
    whole, teacher = _student_and_teacher()
    rows = distill_data.scored(teacher, ids, 0)  # live teacher: no cached targets
    whole, result = distill(whole, teacher, rows, spec, tmp_path / "a", layer_map, "k")
    assert (result.steps, result.resumed_from, result.stopped_by) == (4, 0, "steps")

    first, teacher = _student_and_teacher()
    distill(first, teacher, rows, DistillSpec(**{**spec.__dict__, "max_steps": 2}),
            tmp_path / "b", layer_map, "k")
    second, teacher = _student_and_teacher()
    second, resumed = distill(second, teacher, rows, spec, tmp_path / "b", layer_map, "k")
    assert resumed.resumed_from == 2 and resumed.steps == 4
    assert json.loads((tmp_path / "b" / PROGRESS).read_text())["step"] == 4
    for (name, a), b in zip(whole.state_dict().items(), second.state_dict().values()):
        torch.testing.assert_close(a, b, msg=name)
    untouched, _ = _student_and_teacher()
    assert not torch.equal(untouched.model.layers[0].mlp.up_proj.weight,
                           whole.model.layers[0].mlp.up_proj.weight)
    assert type(whole).__name__ == "LlamaForCausalLM"  # ModelOpt's wrapper is gone


def test_cached_top_k_over_the_whole_vocabulary_trains_like_the_live_teacher(tmp_path):
    ids = torch.randint(3, 300, (6, 16), generator=torch.Generator().manual_seed(3))
    spec = DistillSpec(max_steps=3, batch_size=2, seq_len=16, lr=1e-3, top_k=0)
    live, teacher = _student_and_teacher()
    live, ran_live = distill(live, teacher, distill_data.scored(teacher, ids, 0), spec,
                             tmp_path / "live", {}, "k")
    cached, teacher = _student_and_teacher()
    everything = distill_data.scored(teacher, ids, teacher.config.vocab_size)
    cached, ran_cached = distill(cached, teacher, everything,
                                 DistillSpec(**{**spec.__dict__, "top_k": 300}),
                                 tmp_path / "cached", {}, "k")
    # same loss on the same rows (the cache holds fp16 logits), and after two updates
    assert ran_cached.first_loss == pytest.approx(ran_live.first_loss, rel=1e-3)
    assert ran_cached.last_loss == pytest.approx(ran_live.last_loss, rel=1e-2)
    assert ran_cached.last_loss < ran_cached.first_loss
    untouched, _ = _student_and_teacher()
    assert not torch.equal(untouched.model.layers[0].mlp.up_proj.weight,
                           cached.model.layers[0].mlp.up_proj.weight)


def test_teacher_samples_carry_the_teachers_logits_where_they_were_sampled():
    teacher = tiny_llama(num_hidden_layers=2)
    starts = [[5, 6, 7], [8, 9], [10, 11, 12, 13, 14, 15, 16, 17, 18, 19]]  # last one is cut
    tokenizer = type("T", (), {"pad_token_id": 0})()
    rows = distill_data.generated(teacher, tokenizer, starts, 20, 16, 8, log=lambda _: None)
    assert len(rows) == distill_data.GENERATE_BATCH and rows.ids.shape[1] == 16
    assert rows.ids[0, :3].tolist() == [5, 6, 7] and rows.ids[2, :8].tolist() == starts[2][:8]
    # a row is its prompt + the sampled tokens; targets from the prompt's last token to the
    # last sampled position but one (its successor is not in the row)
    assert rows.mask[0].tolist() == [False] * 2 + [True] * 8 + [False] * 6
    assert rows.mask[2].tolist() == [False] * 7 + [True] * 8 + [False]
    with torch.no_grad():
        top = teacher(rows.ids, use_cache=False).logits.topk(8, dim=-1)
    assert torch.equal(top.indices[rows.mask], rows.index[rows.mask])
    torch.testing.assert_close(top.values[rows.mask], rows.logit[rows.mask].float(), atol=1e-2,
                               rtol=1e-3)


def test_every_row_is_trained_once_per_epoch_in_an_order_fixed_by_the_step():
    from tritonllm.build.compression.distill import batch_rows

    epoch = torch.cat([batch_rows(10, 2, step) for step in range(5)])
    assert sorted(epoch.tolist()) == list(range(10))
    assert torch.equal(batch_rows(10, 2, 7), batch_rows(10, 2, 7))
    assert not torch.equal(torch.cat([batch_rows(10, 2, s) for s in range(5, 10)]), epoch)


def test_compress_stage_feeds_planner_quantize_engine_command_and_cpu_twin(tiny_llama_dir,
                                                                           tmp_path):
    from transformers import AutoModelForCausalLM

    from tritonllm.build.engine import trtllm_build_command
    from tritonllm.build.pipeline import Build
    from tritonllm.engine import GenerationRequest, LLMEngine
    from tests.engine.engine_helpers import tiny_engine_config

    profile = from_dict({
        "name": "c", "model": {"dir": str(tiny_llama_dir)}, "dtype": "float16",
        "compression": {"depth": 0.25, "mlp": 0.25, "kv_groups": 2, "sparsity": "2:4",
                        "sparsity_method": "sparse_magnitude", "calibration_samples": 1,
                        "calibration_max_len": 32,
                        "distill": {"max_steps": 2, "batch_size": 1, "seq_len": 16,
                                    "generate_tokens": 8, "eval_every": 1}},
        "quantization": {"calibration_samples": 1, "calibration_max_len": 32},
        "limits": {"max_seq_len": 256, "max_input_len": 128, "max_num_tokens": 256}})
    build = Build(profile, tmp_path)
    planned = build.model_arch()
    assert (planned.num_layers, planned.intermediate_size, planned.num_heads,
            planned.num_kv_heads) == (3, 192, 4, 2)
    dense_bytes = Build(from_dict({**profile.to_dict(), "compression": {}}), tmp_path / "d"
                        ).plan().weight_bytes_total
    assert build.plan().weight_bytes_total < 0.75 * dense_bytes
    assert build.run("compress").status == "done"
    assert build.run("compress").status == "skipped"  # up to date
    curve = json.loads((tmp_path / "compressed" / "distill" / "curve.json").read_text())
    assert [p["step"] for p in curve] == [0, 1, 2]
    assert all(1 < p["heldout_perplexity"] < 1e4 for p in curve)
    trained = json.loads((tmp_path / "compressed" / "compress.json").read_text())["distill"]
    assert trained["training_tokens"] > trained["training_rows"] * 8  # bundled + sampled rows
    made = json.loads((tmp_path / "compressed" / "model" / "config.json").read_text())
    assert (made["num_hidden_layers"], made["intermediate_size"], made["num_attention_heads"],
            made["num_key_value_heads"]) == (3, 192, 4, 2)
    assert build.model_arch() == planned.__class__(**{**planned.__dict__, "name": "model"})
    assert build.run("quantize").status == "done"
    checkpoint = json.loads((tmp_path / "checkpoint" / "config.json").read_text())
    assert checkpoint["num_hidden_layers"] == 3 and checkpoint["intermediate_size"] == 192
    assert build.run("verify").status == "done"
    assert "--weight_sparsity" in trtllm_build_command(profile, tmp_path / "ck", tmp_path / "e")

    student = AutoModelForCausalLM.from_pretrained(str(tmp_path / "compressed" / "model")).eval()
    assert all(sparsity.is_two_four(w)
               for w in sparsity.decoder_linear_weights(student).values())
    prompt = IDS[0, :12].tolist()
    engine = LLMEngine(tmp_path / "compressed" / "model",
                       tiny_engine_config(max_seq_len=256, max_input_len=128)).start()
    try:
        [*_, last] = engine.generate([GenerationRequest("s", prompt, 10,
                                                        exclude_input_in_output=True)],
                                     timeout=120)[0]
    finally:
        engine.shutdown()
    assert last.token_ids == hf_greedy(student, prompt, 10)


def test_compression_report_measures_teacher_and_students_in_one_run(tiny_llama_dir, tmp_path):
    from tritonllm.build.compression import compression_report
    from tritonllm.build.compression.compress import compress

    spec = CompressionSpec(depth=0.5, calibration_samples=1, calibration_max_len=32)
    student = compress(spec, tiny_llama_dir, tmp_path / "c").model_dir
    students = compression_report.parse_students(f"half depth={student},"
                                                 f"half depth int8={student}:int8_wo")
    rows = compression_report.run_report(tiny_llama_dir, students, tmp_path / "report",
                                         requests=2, rounds=1)
    teacher, pruned, quantized = rows
    assert teacher.perplexity_change_pct == 0 and teacher.top1_agreement == 1.0
    assert pruned.params < teacher.params and pruned.weight_bytes < teacher.weight_bytes
    assert quantized.weight_bytes < pruned.weight_bytes and quantized.mode == "int8_wo"
    assert quantized.perplexity != pruned.perplexity  # the rounding is simulated
    assert quantized.tok_s_c1 == pruned.tok_s_c1 > 0  # one shape, one benchmark
    assert teacher.tok_s_c8 > 0 and len(teacher.bench_runs[1]) == 1
    markdown = (tmp_path / "report" / "compression.md").read_text()
    assert markdown.count("\n| ") == 4 and "half depth int8" in markdown
    assert (tmp_path / "report" / "compression.png").stat().st_size > 10_000
    with pytest.raises(ValueError, match="--students: expected LABEL=DIR"):
        compression_report.parse_students("no-dir")


def test_distillation_curve_summary_and_power_law_extrapolation(tmp_path):
    import math

    from tritonllm.build.compression import distill_curve

    teacher = 20.0  # excess loss e = 3 * t^-0.5 nats: the goal's ln 1.15 at (3 / ln 1.15)^2
    points = [{"step": s, "tokens": 100 * s, "elapsed_s": 6.0 * s, "train_loss": None,
               "heldout_perplexity": teacher * math.exp(3 * (100 * s) ** -0.5) if s else 80.0}
              for s in range(0, 50, 10)]
    info = distill_curve.write(points, teacher, tmp_path, "s")
    assert math.isclose(info["fit_a"], 3) and math.isclose(info["fit_b"], 0.5)
    assert math.isclose(info["goal_tokens_estimate"], (3 / math.log(1.15)) ** 2)
    assert math.isclose(info["tokens_per_minute"], 1000)
    assert math.isclose(info["recovered_share"], (80 - points[-1]["heldout_perplexity"]) / 60)
    assert (tmp_path / "curve.png").stat().st_size > 0
    assert json.loads((tmp_path / "curve.json").read_text())["points"] == points
    with pytest.raises(ValueError, match="--curve: .* no held-out perplexity"):
        (tmp_path / "bare.json").write_text(json.dumps([{"step": 0}]))
        distill_curve.load(tmp_path / "bare.json")
