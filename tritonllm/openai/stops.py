"""Stop strings on streamed text, as OpenAI returns them: the text ends before the first stop
string and never contains it.

The engine stops on the stop words' tokens and, like TensorRT-LLM, returns them as part of the
output; it also cannot see a stop string that straddles tokens in an unusual spelling. So the
frontend scans the text itself. A streamed delta is held back while its tail could still be
the start of a stop string, so nothing after a stop string is ever sent.
"""

from __future__ import annotations


class StopScanner:
    """Feed text deltas in order; get back the text that is safe to send.

    ``feed(delta) -> (text, matched)``: ``matched`` is True once a stop string appeared; the
    text then ends right before it and later feeds must not be made. ``flush()`` returns what
    is still held back when the stream ends without a match. The texts returned concatenate to
    the input up to (not including) the first stop string.
    """

    def __init__(self, stops: tuple[str, ...] | list[str] = ()):
        if any(not s for s in stops):
            raise ValueError("stops: empty stop strings are not allowed")
        self._stops = tuple(stops)
        self._hold = max((len(s) for s in self._stops), default=1) - 1
        self._buffer = ""
        self.matched = False

    def feed(self, delta: str) -> tuple[str, bool]:
        if self.matched:
            raise ValueError("feed: the stream already stopped at a stop string")
        self._buffer += delta
        cut = self._first_stop()
        if cut is not None:
            self.matched = True
            text, self._buffer = self._buffer[:cut], ""
            return text, True
        keep = len(self._buffer) - self._hold if self._hold else len(self._buffer)
        text, self._buffer = self._buffer[:max(keep, 0)], self._buffer[max(keep, 0):]
        return text, False

    def flush(self) -> str:
        text, self._buffer = self._buffer, ""
        return text

    def _first_stop(self) -> int | None:
        found = [i for i in (self._buffer.find(s) for s in self._stops) if i >= 0]
        return min(found) if found else None
