"""The client against the REAL tritonserver (session fixture ``triton_server``): both protocols,
sync and async, streamed and not, chat, refusals, and the CLI. Token budgets are small: the CPU
model makes ~12 tokens/s."""

import asyncio
import contextlib
import subprocess
import sys
from pathlib import Path

import pytest
from tests.helpers import triton_cancellations, wait_for_idle_cache

from tritonllm.client import AsyncClient, Client, InvalidRequestError

PROMPT = "The capital of France is"
MAX_TOKENS = 8
CHAT = [{"role": "user", "content": "What is the capital of France?"}]
PROTOCOLS = ["http", "grpc"]


def _url(server, protocol: str) -> str:
    return server.http_url if protocol == "http" else server.grpc_url


def _sync_texts(server, protocol):
    with Client(protocol=protocol, url=_url(server, protocol)) as client:
        assert client.health() and client.ready()
        completion = client.generate(PROMPT, max_tokens=MAX_TOKENS)
        streamed = "".join(chunk.text for chunk in client.stream(PROMPT, max_tokens=MAX_TOKENS))
    return completion, streamed


async def _async_texts(server, protocol):
    async with AsyncClient(protocol=protocol, url=_url(server, protocol)) as client:
        assert await client.health() and await client.ready()

        async def streamed():
            return "".join([c.text async for c in client.stream(PROMPT, max_tokens=MAX_TOKENS)])

        # concurrently on one client: a whole completion and a stream
        completion, text = await asyncio.gather(
            client.generate(PROMPT, max_tokens=MAX_TOKENS), streamed())
    return completion, text


def test_greedy_text_agrees_across_sync_async_http_grpc_and_streaming(triton_server):
    results = {}
    for protocol in PROTOCOLS:
        results[f"sync {protocol}"] = _sync_texts(triton_server, protocol)
        results[f"async {protocol}"] = asyncio.run(_async_texts(triton_server, protocol))
    texts = {f"{name} {kind}": text for name, (completion, streamed) in results.items()
             for kind, text in (("generate", completion.text), ("stream", streamed))}
    reference = texts["sync http generate"]
    assert reference.strip() and not reference.startswith(PROMPT)  # prompt excluded by default
    assert texts == {name: reference for name in texts}
    for completion, _ in results.values():
        assert completion.num_output_tokens == MAX_TOKENS  # no eos this early for this prompt
        assert completion.num_input_tokens and completion.num_input_tokens > 0
        assert 0 < completion.e2e_s


def test_prompt_is_included_when_asked(triton_server):
    with Client(url=triton_server.http_url) as client:
        completion = client.generate(PROMPT, max_tokens=4, exclude_input_in_output=False)
    assert completion.text.startswith(PROMPT)


def test_chat_uses_the_chat_template_on_both_protocols(triton_server):
    with Client(protocol="grpc", url=triton_server.grpc_url) as client:
        reply = client.chat(CHAT, max_tokens=12).text
    with Client(url=triton_server.http_url) as client:
        streamed = "".join(chunk.text for chunk in client.chat_stream(CHAT, max_tokens=12))
    assert "Paris" in reply
    assert streamed == reply


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("bad, field", [({"max_tokens": 0}, "max_tokens"),
                                        ({"top_p": 2.0}, "top_p")])
def test_a_bad_request_is_refused_naming_the_field_and_serving_goes_on(
        triton_server, protocol, bad, field):
    with Client(protocol=protocol, url=_url(triton_server, protocol)) as client:
        with pytest.raises(InvalidRequestError, match=field) as refused:
            client.generate(PROMPT, **bad)
        with pytest.raises(InvalidRequestError, match=field):
            list(client.stream(PROMPT, **bad))
        assert client.generate(PROMPT, max_tokens=2).text
    asyncio.run(_async_refusal(triton_server, protocol, bad, field))
    error = refused.value
    # gRPC stream errors arrive in-band, without a status code (see error_from_grpc).
    assert (error.http_status, error.grpc_code) == ((400, None) if protocol == "http" else (None, None))


async def _async_refusal(server, protocol, bad, field):
    async with AsyncClient(protocol=protocol, url=_url(server, protocol)) as client:
        with pytest.raises(InvalidRequestError, match=field):
            await client.generate(PROMPT, **bad)
        assert (await client.generate(PROMPT, max_tokens=2)).text


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_leaving_a_stream_early_then_asking_again(triton_server, protocol):
    with Client(protocol=protocol, url=_url(triton_server, protocol)) as client:
        before = wait_for_idle_cache(triton_server)
        cancelled_by_triton = triton_cancellations(triton_server)
        for chunk in client.stream("Tell me a long story.", max_tokens=200, min_tokens=200):
            if chunk.index == 2:
                break
        # The client told the engine to stop: the cache is free again, long before 200 tokens.
        metrics = wait_for_idle_cache(triton_server, before["cancelled"] + 1)
        assert metrics["free_kv_tokens"] == metrics["total_kv_tokens"]
        assert metrics["cancelled"] == before["cancelled"] + 1
        # ... and read the stream to its end instead of cancelling it: Triton 2.51 never frees
        # an ensemble request cancelled while its engine step runs.
        assert triton_cancellations(triton_server) == cancelled_by_triton
        assert client.generate(PROMPT, max_tokens=2).text


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_leaving_an_async_stream_early_stops_it_without_a_cancellation(triton_server, protocol):
    async def leave_early():
        async with AsyncClient(protocol=protocol, url=_url(triton_server, protocol)) as client:
            stream = client.stream("Tell me a long story.", max_tokens=200, min_tokens=200)
            async with contextlib.aclosing(stream) as chunks:
                async for chunk in chunks:
                    if chunk.index == 2:
                        break

    before = wait_for_idle_cache(triton_server)
    cancelled_by_triton = triton_cancellations(triton_server)
    asyncio.run(leave_early())
    metrics = wait_for_idle_cache(triton_server, before["cancelled"] + 1)
    assert metrics["cancelled"] == before["cancelled"] + 1
    assert metrics["free_kv_tokens"] == metrics["total_kv_tokens"]
    assert triton_cancellations(triton_server) == cancelled_by_triton


def _cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tritonllm.cli", *args], input=stdin,
                          capture_output=True, text=True, timeout=120)


def test_cli_generate_prints_the_completion_streamed_or_not(triton_server):
    with Client(url=triton_server.http_url) as client:
        expected = client.generate(PROMPT, max_tokens=MAX_TOKENS).text
    plain = _cli("generate", PROMPT, "--url", triton_server.http_url,
                 "--max-tokens", str(MAX_TOKENS))
    streamed = _cli("generate", PROMPT, "--stream", "--grpc", "--url", triton_server.grpc_url,
                    "--max-tokens", str(MAX_TOKENS))
    assert (plain.returncode, plain.stdout) == (0, expected + "\n"), plain.stderr
    assert (streamed.returncode, streamed.stdout) == (0, expected + "\n"), streamed.stderr


def test_cli_generate_reports_a_refusal(triton_server):
    result = _cli("generate", PROMPT, "--url", triton_server.http_url, "--top-p", "2")
    assert result.returncode == 1 and "top_p" in result.stderr and not result.stdout


def test_cli_chat_keeps_the_conversation_when_piped(triton_server):
    result = _cli("chat", "--url", triton_server.http_url, "--max-tokens", "12",
                  stdin="What is the capital of France?\nAnd of Italy?\n")
    assert result.returncode == 0, result.stderr
    first, second = result.stdout.splitlines()[0], result.stdout.splitlines()[-1]
    assert "Paris" in first and "Rome" in second


EXAMPLES = {  # example -> (protocol, text its output must hold)
    "generate_http.py": ("http", "Paris"),
    "stream_grpc.py": ("grpc", "chunks in"),
    "async_concurrent.py": ("http", "4 concurrent requests"),
    "chat.py": ("http", "Rome"),
}


@pytest.mark.parametrize("example", sorted(EXAMPLES))
def test_examples_run_against_the_server(triton_server, example):
    protocol, expected = EXAMPLES[example]
    path = Path(__file__).parents[2] / "client" / example
    result = subprocess.run([sys.executable, str(path), _url(triton_server, protocol)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert expected in result.stdout
