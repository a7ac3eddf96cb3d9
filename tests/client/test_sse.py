"""Server-sent events as /generate_stream sends them."""

import asyncio

from tritonllm.client._sse import SSEDecoder, aiter_events, iter_events


def test_one_event_per_data_line_and_blank_line():
    lines = [b'data: {"text_output": "He"}', b"", b'data: {"text_output": "llo"}', b""]
    assert list(iter_events(lines)) == ['{"text_output": "He"}', '{"text_output": "llo"}']


def test_line_endings_comments_and_other_fields_are_handled():
    lines = ["data: a\r\n", "\r\n", ": keep-alive\n", "\n", "event: x\n", "id: 3\n",
             "data:b\n", "\n"]
    assert list(iter_events(lines)) == ["a", "b"]


def test_multi_line_data_is_joined_and_a_trailing_event_is_not_lost():
    assert list(iter_events(["data: one", "data: two", "", "data: last"])) == ["one\ntwo", "last"]


def test_only_the_first_space_after_the_colon_is_dropped():
    decoder = SSEDecoder()
    decoder.feed('data:  " spaced"')
    assert decoder.feed("") == ' " spaced"'


def test_async_lines_give_the_same_events():
    async def lines():
        for line in [b"data: 1\n", b"\n", b"data: 2\n", b"\n"]:
            yield line

    async def collect():
        return [event async for event in aiter_events(lines())]

    assert asyncio.run(collect()) == ["1", "2"]
