from tritonllm.loadtest.trace import Chunk, RequestTrace


class FakeClock:
    """A hand-driven clock (time is ours to set; nothing of Triton is faked)."""

    def __init__(self):
        self.now = 50.0

    def __call__(self):
        return self.now


def test_trace_times_non_empty_chunks_and_attributes_tokens():
    clock = FakeClock()
    trace = RequestTrace("id1", "t", streamed=True, clock=clock, wall_clock=lambda: 1234.0)
    for t, chunk in ((50.1, Chunk("", input_tokens=7, output_tokens=0)),
                     (50.3, Chunk("Hel", output_tokens=1)),
                     (50.35, Chunk("", output_tokens=2)),     # held-back partial character
                     (50.5, Chunk("lo", output_tokens=3)),
                     (50.6, Chunk("", output_tokens=3, final=True))):
        clock.now = t
        trace.add(chunk)
    clock.now = 50.65
    record = trace.finish()
    assert record.start == 1234.0
    assert len(record.chunk_times) == 2
    assert abs(record.chunk_times[0] - 0.3) < 1e-9 and abs(record.chunk_times[1] - 0.5) < 1e-9
    assert record.chunk_tokens == (1, 2)
    assert (record.input_tokens, record.output_tokens) == (7, 3)
    assert abs(record.end - 0.65) < 1e-9 and record.ok
    assert trace.text == "Hello"


def test_engine_chunks_count_by_token_ids_and_errors_are_kept():
    clock = FakeClock()
    trace = RequestTrace("id2", "t", streamed=True, clock=clock)
    clock.now = 50.2
    trace.add(Chunk(token_ids=(5, 6)))
    clock.now = 50.4
    record = trace.finish("gRPC: boom")
    assert len(record.chunk_times) == 1 and abs(record.chunk_times[0] - 0.2) < 1e-9
    assert not record.ok
    assert record.chunk_tokens == ()  # no server counts: nothing attributed
    assert record.error == "gRPC: boom" and trace.token_ids == [5, 6]
