"""The benchmark's SYNTHETIC engine: the token stream it replays, in-process (no Triton)."""

from __future__ import annotations

import threading

import pytest

from tritonllm.bench.synthetic import ReplayEngine
from tritonllm.engine.request import GenerationRequest
from tritonllm.models.engine_step import StreamShaper, shaped


def replay(streaming: bool, interval: int = 1, tokens: int = 10) -> list:
    engine = ReplayEngine(list(range(100, 140)), emit_every=interval)
    engine.start()
    outputs, done = [], threading.Event()

    def send(output):
        outputs.append(output)
        if output.finished:
            done.set()

    try:
        request = GenerationRequest(request_id="a", prompt_ids=[1, 2], max_new_tokens=tokens,
                                    streaming=streaming)
        engine.submit(request, shaped(StreamShaper(interval), send))
        assert done.wait(10)
    finally:
        engine.shutdown()
    return outputs


@pytest.mark.parametrize("interval", [1, 4])
def test_streams_are_chunked_as_the_real_step_chunks_them(interval):
    got = [o.token_ids for o in replay(True, interval)]
    assert sum(got, []) == list(range(100, 110))
    assert got[0] == [100] and all(len(ids) <= interval for ids in got)
    assert len(got) == (1 + -(-9 // interval))


def test_non_streaming_gets_prompt_and_tokens_once():
    outputs = replay(False, tokens=3)
    assert [o.token_ids for o in outputs] == [[1, 2, 100, 101, 102]] and outputs[0].finished
