"""Whether the ensemble still forwards a stream: postprocessing acknowledges each streamed engine
response it decodes, and the engine step stops a request whose responses go unacknowledged.

Why: when an HTTP ``generate_stream`` client disconnects (or a gRPC stream to ``ensemble`` is
cancelled), Triton 2.51 cancels the ensemble request but never the engine step already running
for it; it only stops launching postprocessing for the step's responses. Unwatched, the engine
would generate up to ``max_tokens`` for nobody, holding a batch slot and its KV cache.

Each streamed response carries ``delivery_ticket`` INT64 [1, 2]: (request key, response
number). Postprocessing sends the ticket back as a datagram to a Unix socket in the abstract
namespace named after tritonserver's pid (the parent of both Python stubs), so nothing is shared
on disk or in the config. A request is watched only once a first acknowledgement came back: a
client that streams from ``tensorrt_llm`` directly has no postprocessing and is never stopped
for want of one. Then it is abandoned when its oldest unacknowledged response is ``timeout_s``
old.
"""

from __future__ import annotations

import itertools
import os
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

_TICKET = struct.Struct("<qq")


def socket_name(server_pid: int | None = None) -> bytes:
    """The abstract socket of one tritonserver's engine step (default: this stub's parent)."""
    return b"\0tritonllm-delivery-%d" % (server_pid if server_pid is not None else os.getppid())


@dataclass
class _Stream:
    """One watched request: tickets handed out, those not yet acknowledged (number -> when
    it was handed out), and whether any acknowledgement came back."""

    tickets: int = 0
    unacked: dict[int, float] = field(default_factory=dict)
    acknowledged: bool = False


class DeliveryWatch:
    """The engine side: hands out tickets, receives acknowledgements on a thread of its own,
    and says which requests' streams have stopped being forwarded. ``timeout_s``: how long a
    response may go unacknowledged. Thread-safe."""

    def __init__(self, timeout_s: float, name: bytes | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not timeout_s > 0:
            raise ValueError(f"timeout_s: must be > 0, got {timeout_s}")
        self.timeout_s = timeout_s
        self._clock = clock
        self._keys = itertools.count(1)
        self._lock = threading.Lock()
        self._streams: dict[int, _Stream] = {}
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._socket.bind(name if name is not None else socket_name())
        self._thread = threading.Thread(target=self._receive, name="tritonllm-delivery",
                                        daemon=True)
        self._thread.start()

    def open(self) -> int:
        """A key for a new streamed request."""
        key = next(self._keys)
        with self._lock:
            self._streams[key] = _Stream()
        return key

    def ticket(self, key: int) -> np.ndarray:
        """The ticket of the request's next response, INT64 [1, 2]; its clock starts now. A
        request already closed (its last response) gets an unwatched ticket, number -1."""
        with self._lock:
            stream = self._streams.get(key)
            number = -1 if stream is None else stream.tickets
            if stream is not None:
                stream.tickets += 1
                stream.unacked[number] = self._clock()
        return np.array([[key, number]], dtype=np.int64)

    def abandoned(self, key: int) -> bool:
        """Whether the request, once acknowledged, has had a response go unacknowledged for
        ``timeout_s``."""
        with self._lock:
            stream = self._streams.get(key)
            return (stream is not None and stream.acknowledged and bool(stream.unacked)
                    and self._clock() - min(stream.unacked.values()) > self.timeout_s)

    def close_key(self, key: int) -> None:
        """The request is over: forget it."""
        with self._lock:
            self._streams.pop(key, None)

    def acknowledge(self, key: int, number: int) -> None:
        with self._lock:
            stream = self._streams.get(key)
            if stream is not None:
                stream.unacked.pop(number, None)
                stream.acknowledged = True

    def close(self) -> None:
        self._socket.close()

    def _receive(self) -> None:
        while True:
            try:
                data = self._socket.recv(_TICKET.size)
            except OSError:  # closed
                return
            if len(data) == _TICKET.size:
                self.acknowledge(*_TICKET.unpack(data))


class Acknowledger:
    """The postprocessing side: sends tickets back to the engine step's watch. Best effort:
    never blocks and never raises (no watch listening, a full socket buffer)."""

    def __init__(self, name: bytes | None = None) -> None:
        self._name = name if name is not None else socket_name()
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._socket.setblocking(False)

    def send(self, ticket: np.ndarray) -> None:
        key, number = (int(v) for v in np.asarray(ticket).reshape(-1)[:2])
        try:
            self._socket.sendto(_TICKET.pack(key, number), self._name)
        except OSError:
            pass

    def close(self) -> None:
        self._socket.close()
