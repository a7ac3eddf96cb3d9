"""Server-sent events, as Triton's ``/generate_stream`` sends them: ``data: {...}`` lines, one
blank line after each event. Only the ``data`` field matters here; comments (``:``) and other
fields (``event``, ``id``, ``retry``) are skipped, per the SSE specification."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator


class SSEDecoder:
    """Feeds lines (bytes or str, with or without the line ending) and returns each event's
    data when the event ends; several ``data`` lines of one event are joined by newlines."""

    def __init__(self) -> None:
        self._data: list[str] = []

    def feed(self, line: bytes | str) -> str | None:
        if isinstance(line, bytes):
            line = line.decode("utf-8")
        line = line.rstrip("\r\n")
        if not line:
            return self.flush()
        name, _, value = line.partition(":")
        if name == "data":
            self._data.append(value[1:] if value.startswith(" ") else value)
        return None

    def flush(self) -> str | None:
        """The pending event's data (the stream may end without a final blank line)."""
        data, self._data = self._data, []
        return "\n".join(data) if data else None


def iter_events(lines: Iterable[bytes | str]) -> Iterator[str]:
    decoder = SSEDecoder()
    for line in lines:
        if (data := decoder.feed(line)) is not None:
            yield data
    if (data := decoder.flush()) is not None:
        yield data


async def aiter_events(lines: AsyncIterable[bytes | str]) -> AsyncIterator[str]:
    decoder = SSEDecoder()
    async for line in lines:
        if (data := decoder.feed(line)) is not None:
            yield data
    if (data := decoder.flush()) is not None:
        yield data
