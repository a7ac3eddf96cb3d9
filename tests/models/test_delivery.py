"""The delivery watch over a real Unix datagram socket: acknowledged responses keep a request
alive, one left unacknowledged for the timeout marks it abandoned (fake clock)."""

import os
import time

import numpy as np
import pytest

from tritonllm.models.delivery import Acknowledger, DeliveryWatch, socket_name


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


@pytest.fixture
def pair():
    name = b"\0tritonllm-delivery-test-%d-%d" % (os.getpid(), time.monotonic_ns())
    clock = Clock()
    watch, acks = DeliveryWatch(1.5, name=name, clock=clock), Acknowledger(name=name)
    yield watch, acks, clock
    watch.close()
    acks.close()


def _until(condition, timeout_s=5.0):
    deadline = time.monotonic() + timeout_s
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)
    return condition()


def test_acknowledged_responses_keep_a_request_alive(pair):
    watch, acks, clock = pair
    key = watch.open()
    for _ in range(5):
        acks.send(watch.ticket(key))
        clock.now += 1.0
    assert _until(lambda: not watch._streams[key].unacked)
    clock.now += 10
    assert not watch.abandoned(key)  # nothing outstanding, however long it has been


def test_a_response_left_unacknowledged_for_the_timeout_marks_the_request(pair):
    watch, acks, clock = pair
    key, other = watch.open(), watch.open()
    acks.send(watch.ticket(key))
    watch.ticket(key)  # this one never reaches postprocessing
    acks.send(watch.ticket(other))
    assert _until(lambda: 0 not in watch._streams[key].unacked and not watch._streams[other].unacked)
    clock.now += 1.5
    assert not watch.abandoned(key)
    clock.now += 0.01
    assert watch.abandoned(key) and not watch.abandoned(other)


def test_a_request_never_acknowledged_is_not_watched(pair):
    # A client streaming from tensorrt_llm directly: no postprocessing, no acknowledgements.
    watch, _, clock = pair
    key = watch.open()
    watch.ticket(key)
    clock.now += 60
    assert not watch.abandoned(key)


def test_acknowledgements_may_arrive_out_of_order(pair):
    watch, acks, clock = pair
    key = watch.open()
    tickets = [watch.ticket(key) for _ in range(3)]
    for ticket in reversed(tickets):
        acks.send(ticket)
    assert _until(lambda: not watch._streams[key].unacked)
    clock.now += 5
    assert not watch.abandoned(key)


def test_a_closed_request_is_forgotten_and_its_last_ticket_unwatched(pair):
    watch, _, clock = pair
    key = watch.open()
    watch.ticket(key)
    watch.close_key(key)
    assert watch.ticket(key).tolist() == [[key, -1]]
    clock.now += 10
    assert not watch.abandoned(key)


def test_acknowledging_with_no_watch_listening_is_harmless():
    acks = Acknowledger(name=b"\0tritonllm-delivery-nobody-%d" % os.getpid())
    acks.send(np.array([[1, 0]], dtype=np.int64))
    acks.close()


def test_the_socket_is_named_after_the_server_process():
    assert socket_name(1234) == b"\0tritonllm-delivery-1234"
    assert socket_name() == socket_name(os.getppid())
