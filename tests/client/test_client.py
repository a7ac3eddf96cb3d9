"""Client and AsyncClient over the transport seam: what they send and how they fold what comes
back, with no server. (The wire forms are tested in test_request/test_responses, the real
server in test_live.)"""

import asyncio
import json

import pytest

from tritonllm.client import (AsyncClient, Client, GenerationOptions, InvalidRequestError,
                              TimeoutError)

RESPONSES = [{"text_output": [" Paris"], "num_output_tokens": [1]},
             {"text_output": ["."], "num_output_tokens": [2], "num_input_tokens": [9]}]


class RecordingTransport:
    """Records each request; answers with ``responses``, or raises ``error`` after them."""

    def __init__(self, responses=RESPONSES, error=None):
        self.responses, self.error = responses, error
        self.requests, self.closed_streams, self.closed = [], 0, False

    def infer(self, request):
        self.requests.append(request)
        try:
            yield from self.responses
            if self.error:
                raise self.error
        finally:
            self.closed_streams += 1

    def live(self):
        return True

    def ready(self, model):
        return model == "ensemble"

    def close(self):
        self.closed = True


class AsyncRecordingTransport(RecordingTransport):
    async def infer(self, request):
        self.requests.append(request)
        try:
            for outputs in self.responses:
                await asyncio.sleep(0)
                yield outputs
            if self.error:
                raise self.error
        finally:
            self.closed_streams += 1

    async def live(self):
        return True

    async def ready(self, model):
        return model == "ensemble"

    async def close(self):
        self.closed = True


def test_generate_sends_one_non_streamed_request_and_folds_the_answer():
    transport = RecordingTransport()
    with Client(transport=transport) as client:
        completion = client.generate("The capital of France is", max_tokens=8, seed=1)
    (request,) = transport.requests
    assert request.stream is False and request.model == "ensemble"
    assert request.inputs["max_tokens"].item() == 8 and request.inputs["seed"].item() == 1
    assert request.inputs["stream"].item() is False
    assert completion.text == " Paris." and completion.num_output_tokens == 2
    assert completion.num_input_tokens == 9 and completion.request_id == request.request_id
    assert 0 <= completion.ttft_s <= completion.e2e_s
    assert transport.closed


def test_log_probs_are_reported_only_when_asked_for():
    transport = RecordingTransport([{"text_output": ["a"], "output_log_probs": [-0.5],
                                     "cum_log_probs": [-0.5]}])
    client = Client(transport=transport)
    assert client.generate("x").log_probs is None
    assert client.generate("x").cum_log_prob is None
    assert client.generate("x", return_log_probs=True).log_probs == (-0.5,)
    assert next(client.stream("x", return_log_probs=True)).log_probs == (-0.5,)
    assert next(client.stream("x")).log_probs is None


def test_stream_yields_indexed_deltas_in_arrival_order():
    transport = RecordingTransport()
    chunks = list(Client(transport=transport).stream("x"))
    assert [c.text for c in chunks] == [" Paris", "."]
    assert [c.index for c in chunks] == [0, 1]
    assert chunks[0].arrival_s <= chunks[1].arrival_s
    assert transport.requests[0].stream is True


def test_leaving_a_stream_early_closes_it_and_stops_the_engine_request():
    transport = RecordingTransport()
    for _chunk in Client(transport=transport).stream("x"):
        break
    stream, stop = transport.requests
    assert (stop.model, stop.request_id) == ("tensorrt_llm", stream.request_id)
    assert stop.inputs["stop"].tolist() == [[True]]
    assert transport.closed_streams == 2  # the abandoned stream, then the stop request


def test_a_stream_read_to_the_end_sends_no_stop():
    transport = RecordingTransport()
    list(Client(transport=transport).stream("x"))
    assert len(transport.requests) == 1


def test_call_options_override_client_options_and_bad_names_are_type_errors():
    transport = RecordingTransport()
    client = Client(transport=transport, options=GenerationOptions(max_tokens=3, top_k=5))
    client.generate("x", top_k=2)
    client.generate("x")
    first, second = transport.requests
    assert first.inputs["top_k"].item() == 2 and first.inputs["max_tokens"].item() == 3
    assert second.inputs["top_k"].item() == 5
    with pytest.raises(TypeError, match="max_token"):
        client.generate("x", max_token=3)
    with pytest.raises(ValueError, match="max_tokens"):
        client.generate("x", max_tokens=2**40)


def test_chat_sends_messages_as_json_with_the_template_flag():
    transport = RecordingTransport()
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    Client(transport=transport).chat(messages, max_tokens=4)
    list(Client(transport=transport).chat_stream(messages))
    for request in transport.requests:
        assert json.loads(request.inputs["text_input"].item()) == messages
        assert request.inputs["apply_chat_template"].item() is True
    assert [r.stream for r in transport.requests] == [False, True]


def test_request_ids_are_unique_or_the_callers():
    transport = RecordingTransport()
    client = Client(transport=transport)
    client.generate("x")
    client.generate("x")
    client.generate("x", request_id="mine")
    ids = [r.request_id for r in transport.requests]
    assert len(set(ids)) == 3 and ids[2] == "mine"


def test_a_server_error_mid_stream_reaches_the_caller_after_the_chunks():
    transport = RecordingTransport(error=InvalidRequestError("top_p: must be in (0, 1]"))
    received = []
    with pytest.raises(InvalidRequestError, match="top_p"):
        for chunk in Client(transport=transport).stream("x"):
            received.append(chunk.text)
    assert received == [" Paris", "."]
    assert len(transport.requests) == 1  # the server ended the request: nothing to stop


def test_a_timeout_still_stops_the_engine_request():
    transport = RecordingTransport(error=TimeoutError("the stream took longer than 1 s"))
    with pytest.raises(TimeoutError):
        Client(transport=transport).generate("x")
    assert [r.model for r in transport.requests] == ["ensemble", "tensorrt_llm"]


def test_health_and_ready_ask_the_transport_for_the_clients_model():
    assert Client(transport=RecordingTransport()).health() is True
    assert Client(transport=RecordingTransport()).ready() is True
    assert Client(transport=RecordingTransport(), model="other").ready() is False


@pytest.mark.parametrize("kwargs, words", [
    ({"protocol": "udp"}, "protocol"), ({"timeout": 0}, "timeout"),
    ({"connect_timeout": -1}, "connect_timeout"), ({"model": ""}, "model"),
])
def test_bad_client_settings_raise_naming_the_field(kwargs, words):
    with pytest.raises(ValueError, match=words):
        Client(transport=RecordingTransport(), **kwargs)


def test_default_urls_follow_the_protocol():
    assert Client(transport=RecordingTransport()).url == "localhost:8000"
    assert Client(transport=RecordingTransport(), protocol="grpc").url == "localhost:8001"
    assert Client(transport=RecordingTransport(), url="h:1").url == "h:1"


def test_async_client_mirrors_the_sync_client():
    transport = AsyncRecordingTransport()

    async def scenario():
        async with AsyncClient(transport=transport) as client:
            completion = await client.generate("x", max_tokens=2)
            chunks = [c async for c in client.stream("x")]
            reply = await client.chat([{"role": "user", "content": "hi"}])
            async for _chunk in client.chat_stream([{"role": "user", "content": "hi"}]):
                break
            return completion, chunks, reply, await client.health(), await client.ready()

    completion, chunks, reply, live, ready = asyncio.run(scenario())
    assert completion.text == reply.text == "".join(c.text for c in chunks) == " Paris."
    assert [c.index for c in chunks] == [0, 1]
    assert [r.stream for r in transport.requests] == [False, True, False, True, False]
    stop = transport.requests[-1]  # leaving chat_stream early stopped its engine request
    assert (stop.model, stop.request_id) == ("tensorrt_llm", transport.requests[3].request_id)
    assert transport.closed_streams == 5 and transport.closed and live and ready


def test_async_requests_run_concurrently_on_one_client():
    transport = AsyncRecordingTransport()

    async def scenario():
        client = AsyncClient(transport=transport)
        return await asyncio.gather(*(client.generate(f"p{i}") for i in range(8)))

    completions = asyncio.run(scenario())
    assert len({c.request_id for c in completions}) == 8
