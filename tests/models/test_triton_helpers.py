"""The adapters' helpers that do not need Triton: the response queue and the polled check."""

from __future__ import annotations

import threading

from tritonllm.models.triton import ResponseQueue, polled


def test_responses_go_out_in_order_from_another_thread():
    sent, threads = [], set()
    responses = ResponseQueue()

    def send(i):
        sent.append(i)
        threads.add(threading.current_thread().name)

    for i in range(100):
        responses.put(lambda i=i: send(i))
    assert responses.close(timeout=10)
    assert sent == list(range(100))
    assert threads == {"tritonllm-responses"}


def test_a_failed_send_reaches_its_handler_and_the_queue_keeps_sending():
    sent, failures = [], []
    responses = ResponseQueue()

    def broken():
        raise RuntimeError("client gone")

    responses.put(broken, on_error=failures.append)
    responses.put(lambda: sent.append("next"))
    assert responses.close(timeout=10)
    assert [str(exc) for exc in failures] == ["client gone"] and sent == ["next"]


def test_close_sends_what_was_queued_first():
    gate, sent = threading.Event(), []
    responses = ResponseQueue()
    responses.put(lambda: gate.wait(10))  # the thread is busy while more is queued
    for i in range(3):
        responses.put(lambda i=i: sent.append(i))
    gate.set()
    assert responses.close(timeout=10)
    assert sent == [0, 1, 2]


def test_a_full_queue_holds_the_producer_back():
    gate = threading.Event()
    responses = ResponseQueue(max_waiting=2)
    responses.put(lambda: gate.wait(10))  # taken by the thread, which then waits
    responses.put(lambda: None)
    responses.put(lambda: None)            # two waiting: full
    third = threading.Thread(target=responses.put, args=(lambda: None,))
    third.start()
    third.join(0.2)
    assert third.is_alive()                # blocked until the thread sends again
    gate.set()
    third.join(10)
    assert not third.is_alive() and responses.close(timeout=10)


def test_polled_asks_at_most_once_per_period_and_remembers_true():
    now, answers, asked = [0.0], [False, True], []

    def check():
        asked.append(now[0])
        return answers[len(asked) - 1]

    is_cancelled = polled(check, 0.1, clock=lambda: now[0])
    assert not is_cancelled()          # asked at t=0
    now[0] = 0.05
    assert not is_cancelled()          # within the period: the last answer, not asked
    now[0] = 0.1
    assert is_cancelled()              # asked again: cancelled
    now[0] = 5.0
    assert is_cancelled()              # cancelled stays cancelled without asking
    assert asked == [0.0, 0.1]
