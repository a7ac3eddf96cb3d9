"""The engine metrics' pure parts: KV-cache usage and a finished request's timings."""

from tritonllm.engine import EngineStats, GenerationOutput
from tritonllm.models.metrics import HISTOGRAMS, kv_cache_usage, request_timings

MS = 1_000_000


def test_kv_cache_usage_is_the_fraction_of_blocks_in_use():
    assert kv_cache_usage(EngineStats(free_kv_blocks=64, total_kv_blocks=64)) == 0
    assert kv_cache_usage(EngineStats(free_kv_blocks=16, total_kv_blocks=64)) == 0.75
    assert kv_cache_usage(EngineStats()) == 0


def test_request_timings_from_the_output_times():
    output = GenerationOutput("r", [], finished=True, arrival_time_ns=1000 * MS,
                              first_scheduled_time_ns=1010 * MS, first_token_time_ns=1100 * MS,
                              last_token_time_ns=1500 * MS, num_output_tokens=5)
    times = request_timings(output, finished_ns=1600 * MS)
    assert set(times) == set(HISTOGRAMS)
    assert times["tritonllm_request_queue_time_seconds"] == 0.01
    assert times["tritonllm_time_to_first_token_seconds"] == 0.1
    assert times["tritonllm_inter_token_latency_seconds"] == 0.1
    assert times["tritonllm_e2e_request_latency_seconds"] == 0.6


def test_a_request_cancelled_while_queued_has_only_an_end_to_end_time():
    output = GenerationOutput("r", [], finished=True, finish_reason="cancelled",
                              arrival_time_ns=1000 * MS)
    assert set(request_timings(output, finished_ns=1200 * MS)) == {
        "tritonllm_e2e_request_latency_seconds"}
