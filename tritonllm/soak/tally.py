"""The books of a soak: one :class:`Record` per request sent, and the totals.

Every request ends in exactly one outcome:

- ``completed``: a final response (a whole completion, or a stream to its last chunk);
- ``rejected``: refused for load (``ServerBusyError`` / HTTP 503): nothing ran;
- ``expected_error``: a refusal we provoked (a bad input answered as InvalidRequestError or
  HTTP 400; a deliberate short timeout answered as TimeoutError);
- ``abandoned``: a stream we closed on purpose after its first chunk (the client stops it);
- ``error:<Type>``: anything else: a failure of the server or of the soak.

``lost`` = sent - accounted: requests that never came back (a worker still waiting at the end).
"""

from __future__ import annotations

import collections
import threading
from dataclasses import dataclass

COMPLETED, REJECTED, EXPECTED, ABANDONED = "completed", "rejected", "expected_error", "abandoned"
OUTCOMES = (COMPLETED, REJECTED, EXPECTED, ABANDONED)


@dataclass(frozen=True)
class Record:
    """One request: ``kind`` (see :mod:`.kinds`), ``sent_s`` seconds after the soak began,
    ``latency_s`` from send to outcome, ``outcome`` (above), ``detail`` (an error's message)."""

    kind: str
    sent_s: float
    latency_s: float
    outcome: str
    detail: str = ""


class Tally:
    """Thread-safe books: :meth:`sent` before each request, :meth:`add` once it has ended."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sent = 0
        self.records: list[Record] = []

    def sent(self) -> None:
        with self._lock:
            self._sent += 1

    def add(self, record: Record) -> None:
        with self._lock:
            self.records.append(record)

    def totals(self) -> dict:
        """``sent``, each outcome's count, ``errors`` ({type: count}), ``accounted``, ``lost``."""
        with self._lock:
            counts = collections.Counter(r.outcome for r in self.records)
            sent = self._sent
        errors = {k.split(":", 1)[1]: v for k, v in sorted(counts.items())
                  if k.startswith("error:")}
        totals = {"sent": sent, **{o: counts[o] for o in OUTCOMES}, "errors": errors}
        totals["accounted"] = sum(counts.values())
        totals["lost"] = sent - totals["accounted"]
        return totals

    def by_kind(self) -> dict[str, dict[str, int]]:
        """``{kind: {outcome: count}}``."""
        table: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
        with self._lock:
            for r in self.records:
                table[r.kind][r.outcome] += 1
        return {kind: dict(c) for kind, c in sorted(table.items())}
