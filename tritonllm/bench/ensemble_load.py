"""The load ``tritonllm bench ensemble`` puts on a server: closed loops of streamed requests over
gRPC (one bidirectional stream, as tensorrtllm_backend's clients do) and HTTP SSE (one
connection per request), and one-token requests through the ensemble and to ``tensorrt_llm``
directly. Each run reports how many responses arrived and how many requests streamed exactly
the ``expected`` text."""

from __future__ import annotations

import asyncio
import json
import queue
import statistics
import time
import uuid

import numpy as np

PROMPT = "Benchmark prompt: say something."


# --- gRPC: one bidirectional stream, a closed loop of `concurrency` requests ---------------

def grpc_run(url: str, stateful: bool, requests: int, concurrency: int, tokens: int,
             expected: str) -> tuple[int, int, float]:
    """(responses, exact requests, seconds). ``stateful``: ask for the per-request detokenizer."""
    import tritonclient.grpc as grpcclient

    texts: dict[str, list[str]] = {}
    done: queue.Queue = queue.Queue()
    counts = {"responses": 0}

    def on_response(result, error):
        if error is not None:
            done.put(("error", str(error)))
            return
        response = result.get_response()
        rid = response.id
        out = result.as_numpy("text_output")
        if out is not None:
            counts["responses"] += 1
            texts[rid].append(out[0].decode())
        if response.parameters["triton_final_response"].bool_param:
            done.put(("done", rid))

    client = grpcclient.InferenceServerClient(url)
    client.start_stream(callback=on_response)
    try:
        start = time.perf_counter()
        sent = 0
        for _ in range(min(concurrency, requests)):
            _grpc_send(client, grpcclient, texts, tokens, stateful)
            sent += 1
        finished = 0
        while finished < requests:
            kind, value = done.get(timeout=120)
            if kind == "error":
                raise RuntimeError(f"gRPC stream: {value}")
            finished += 1
            if sent < requests:
                _grpc_send(client, grpcclient, texts, tokens, stateful)
                sent += 1
        seconds = time.perf_counter() - start
    finally:
        client.stop_stream()
        client.close()
    exact = sum("".join(chunks) == expected for chunks in texts.values())
    return counts["responses"], exact, seconds


def _grpc_send(client, grpcclient, texts, tokens: int, stateful: bool) -> None:
    rid = uuid.uuid4().hex
    texts[rid] = []
    inputs = []
    for name, value, dtype in (("text_input", np.array([[PROMPT.encode()]], dtype=np.object_),
                                "BYTES"),
                               ("max_tokens", np.array([[tokens]], dtype=np.int32), "INT32"),
                               ("stream", np.array([[True]]), "BOOL")):
        tensor = grpcclient.InferInput(name, list(value.shape), dtype)
        tensor.set_data_from_numpy(value)
        inputs.append(tensor)
    params = {"incremental_detokenize": True} if stateful else None
    client.async_stream_infer("ensemble", inputs, request_id=rid, parameters=params,
                              enable_empty_final_response=True)


# --- one-token requests: what the ensemble adds over calling the engine step directly -------

def one_token_latency(url: str, codec, rounds: int = 40) -> tuple[float, float]:
    """Median ms of a one-token (non-streamed) request through the ensemble and straight to
    ``tensorrt_llm``, interleaved, one at a time over one gRPC stream."""
    import tritonclient.grpc as grpcclient

    ids = np.array([codec.encode(PROMPT)], dtype=np.int32)
    calls = {
        "ensemble": [("text_input", np.array([[PROMPT.encode()]], dtype=np.object_), "BYTES"),
                     ("max_tokens", np.array([[1]], dtype=np.int32), "INT32")],
        "tensorrt_llm": [("input_ids", ids, "INT32"),
                         ("input_lengths", np.array([[ids.shape[1]]], dtype=np.int32), "INT32"),
                         ("request_output_len", np.array([[1]], dtype=np.int32), "INT32")],
    }
    answers: queue.Queue = queue.Queue()
    client = grpcclient.InferenceServerClient(url)
    client.start_stream(callback=lambda result, error: answers.put(error))
    times = {model: [] for model in calls}
    try:
        for _ in range(rounds):
            for model, values in calls.items():
                inputs = []
                for name, value, dtype in values:
                    inputs.append(grpcclient.InferInput(name, list(value.shape), dtype))
                    inputs[-1].set_data_from_numpy(value)
                start = time.perf_counter()
                client.async_stream_infer(model, inputs)
                if (error := answers.get(timeout=60)) is not None:
                    raise RuntimeError(f"{model}: {error}")
                times[model].append(1000 * (time.perf_counter() - start))
    finally:
        client.stop_stream()
        client.close()
    return statistics.median(times["ensemble"]), statistics.median(times["tensorrt_llm"])


# --- HTTP SSE: generate_stream, `concurrency` connections at once --------------------------

def sse_run(url: str, stateful: bool, requests: int, concurrency: int, tokens: int,
            expected: str) -> tuple[int, int, float]:
    """As :func:`grpc_run`, over HTTP ``generate_stream``, ``concurrency`` connections."""
    return asyncio.run(_sse_run(url, stateful, requests, concurrency, tokens, expected))


async def _sse_run(url, stateful, requests, concurrency, tokens, expected):
    import aiohttp

    results = []
    pending = iter(range(requests))

    async def worker(session):
        for _ in pending:
            results.append(await _sse_one(session, url, stateful, tokens))

    start = time.perf_counter()
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
    seconds = time.perf_counter() - start
    responses = sum(len(chunks) for chunks in results)
    exact = sum("".join(chunks) == expected for chunks in results)
    return responses, exact, seconds


async def _sse_one(session, url: str, stateful: bool, tokens: int) -> list[str]:
    body = {"text_input": PROMPT, "max_tokens": tokens, "stream": True}
    if stateful:
        body.update(id=uuid.uuid4().hex, incremental_detokenize=True)
    chunks = []
    async with session.post(f"http://{url}/v2/models/ensemble/generate_stream",
                            json=body) as response:
        response.raise_for_status()
        async for line in response.content:
            if line.startswith(b"data:"):
                event = json.loads(line[5:])
                if "error" in event:
                    raise RuntimeError(f"generate_stream: {event['error']}")
                chunks.append(event["text_output"])
    return chunks
