"""Weights and the KV cache in transparent huge pages (tritonllm.engine.huge_pages)."""

from __future__ import annotations

import pytest
import torch

from tests.engine.engine_helpers import tiny_llama, tiny_runner
from tritonllm.engine import cpu_kernels, huge_pages
from tritonllm.engine.runner import ModelRunner
from tritonllm.engine.scheduler import ScheduledBatch

GRANTS = huge_pages.thp_mode() in ("always", "madvise")


def test_zeros_start_on_a_huge_page_boundary_and_are_zero():
    region = huge_pages.zeros(3 * huge_pages.HUGE_PAGE + 5)
    assert region.dtype == torch.uint8 and region.numel() == 3 * huge_pages.HUGE_PAGE + 5
    assert region.data_ptr() % huge_pages.HUGE_PAGE == 0
    assert not region.any()


@pytest.mark.skipif(not GRANTS, reason=f"transparent huge pages: {huge_pages.thp_mode()}")
def test_zeros_are_backed_by_huge_pages_where_the_kernel_grants_them():
    region = huge_pages.zeros(4 * huge_pages.HUGE_PAGE)
    assert huge_pages.huge_bytes(region) == 4 * huge_pages.HUGE_PAGE


def test_pack_copies_in_order_on_cache_lines_into_one_region():
    tensors = [torch.randn(3, 5), torch.randint(-127, 127, (7, 9), dtype=torch.int8),
               torch.randn(11, dtype=torch.float64)]
    copies = huge_pages.pack(tensors)
    for original, copy in zip(tensors, copies):
        assert copy.dtype == original.dtype and copy.shape == original.shape
        assert torch.equal(copy, original) and copy.is_contiguous()
        assert copy.data_ptr() % huge_pages.ALIGN == 0
    starts = [c.data_ptr() for c in copies]
    assert starts == sorted(starts)
    assert starts[-1] - starts[0] < 2 * huge_pages.HUGE_PAGE  # one region, nothing between
    copies[0].zero_()
    assert tensors[0].abs().sum() > 0  # copies, not views of the originals


def decode_batch() -> ScheduledBatch:
    batch = ScheduledBatch(num_decodes=2)
    for row, (table, context) in enumerate([([3, 1], 6), ([0], 2)]):
        batch.query_lens.append(1), batch.context_lens.append(context)
        batch.block_tables.append(table), batch.sample.append(True)
        batch.input_ids.append(20 + row), batch.positions.append(context - 1)
        batch.slot_mapping.append(table[(context - 1) // 4] * 4 + (context - 1) % 4)
        batch.seqs.append(None)
    return batch


@pytest.fixture
def ordinary_memory():
    ModelRunner.huge_pages = False
    yield
    ModelRunner.huge_pages = True


@pytest.mark.parametrize("weights", ["fp32", "int8"])
@pytest.mark.parametrize("tied", [False, True])
def test_runner_packs_weights_in_read_order_and_computes_the_same(weights, tied, request):
    if cpu_kernels.load() is None:
        pytest.skip("our CPU kernels are unavailable here")
    model = tiny_llama(seed=5, tie_word_embeddings=tied, attention_bias=True)
    packed = tiny_runner(model, weights=weights)
    request.getfixturevalue("ordinary_memory")
    plain = tiny_runner(model, weights=weights)

    def first(linear):
        return linear.kernel_operands()[0].data_ptr()

    held = packed.weights
    order = [ptr for w in held.layers for ptr in (
        w.input_norm.data_ptr(), first(w.qkv), first(w.o), w.post_norm.data_ptr(),
        first(w.gate_up), first(w.down))] + [held.final_norm.data_ptr(), first(held.lm_head)]
    assert order == sorted(order)
    assert packed.kv_cache.data_ptr() % huge_pages.HUGE_PAGE == 0
    assert not packed.kv_cache.any()
    if tied and weights == "fp32":  # one copy of the table: the lookup reads lm_head's panels
        assert held.embed is None
    for runner in (packed, plain):
        runner.kv_cache.normal_(generator=torch.Generator().manual_seed(3))
    assert torch.equal(packed.forward(decode_batch()), plain.forward(decode_batch()))
