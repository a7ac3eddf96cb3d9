"""A dying engine loop: every request in flight gets one final error, later requests are
refused, the model instance ends. Runs the real engine (a tiny random Llama); the loop is made
to die by breaking its idle check, the one call outside the step's own error handling."""

from __future__ import annotations

import threading

import pytest

from tests.engine.engine_helpers import tiny_engine_config, tiny_llama, tiny_runner
from tritonllm.engine import GenerationOutput, GenerationRequest, LLMEngine
from tritonllm.models.crash import EngineDeadError, InFlight, on_engine_fatal

HANG_S = 120  # only detects a hang


@pytest.fixture(scope="module")
def tiny_model():
    return tiny_llama()


def break_the_loop(engine: LLMEngine) -> None:
    def broken() -> bool:
        raise RuntimeError("scheduler corrupted")

    engine.scheduler.has_work = broken


def collector():
    outputs, done = [], threading.Event()

    def on_output(output: GenerationOutput) -> None:
        outputs.append(output)
        if output.finished:
            done.set()
    return outputs, done, on_output


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_dead_loop_fails_requests_in_flight_refuses_new_ones_and_ends_the_instance(tiny_model):
    engine = LLMEngine(tiny_runner(tiny_model))
    inflight, ended = InFlight(), threading.Event()
    engine.on_fatal = on_engine_fatal(inflight, end_process=ended.set)
    engine.start()
    outputs, done, on_output = collector()
    engine.submit(GenerationRequest("a", [5, 6, 7], 100, streaming=True),
                  inflight.track("a", on_output))
    break_the_loop(engine)
    assert done.wait(HANG_S) and ended.wait(HANG_S)
    final = outputs[-1]
    assert final.finish_reason == "error"
    assert final.error == "engine loop died: RuntimeError('scheduler corrupted')"
    assert [o.finished for o in outputs].count(True) == 1
    assert len(inflight) == 0
    with pytest.raises(EngineDeadError, match="engine loop died"):
        inflight.track("b", on_output)
    engine.shutdown(timeout=HANG_S)


def test_each_request_gets_exactly_one_final_output():
    inflight = InFlight()
    outputs, done, on_output = collector()
    tracked = inflight.track("a", on_output)
    tracked(GenerationOutput("a", [1], finished=True, finish_reason="length"))
    assert inflight.fail_all("engine loop died: X") == 0  # already finished: not failed again
    assert [o.finish_reason for o in outputs] == ["length"]


def test_the_engine_answers_nothing_after_fail_all():
    inflight = InFlight()
    outputs, done, on_output = collector()
    tracked = inflight.track("a", on_output)
    assert inflight.fail_all("engine loop died: X") == 1
    tracked(GenerationOutput("a", [1], finished=True, finish_reason="length"))
    assert [o.finish_reason for o in outputs] == ["error"]


def test_a_failing_callback_does_not_stop_the_others():
    inflight = InFlight()
    outputs, done, on_output = collector()

    def broken(output):
        raise OSError("client gone")

    inflight.track("a", broken)
    inflight.track("b", on_output)
    assert inflight.fail_all("engine loop died: X") == 2
    assert outputs[0].error == "engine loop died: X"


def test_a_refused_request_is_forgotten(tiny_model):
    engine = LLMEngine(tiny_runner(tiny_model)).start()
    inflight = InFlight()
    try:
        with pytest.raises(ValueError):
            too_long = [1] * (tiny_engine_config().max_input_len + 1)
            engine.submit(GenerationRequest("a", too_long, 4), inflight.track("a", print))
        inflight.forget("a")
        assert len(inflight) == 0
    finally:
        engine.shutdown(timeout=HANG_S)
