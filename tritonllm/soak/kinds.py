"""The request kinds of a soak and their fixed mix.

A kind is a function ``(ends: Endpoints, rng: random.Random) -> outcome`` that sends ONE
request and returns the outcome of :mod:`.tally` it earned (``completed``, ``expected_error``,
``abandoned``); any exception it raises is classified by :func:`classify`. Triton is reached
with :mod:`tritonllm.client` only; the OpenAI frontend with plain ``requests`` (its wire format
is OpenAI's, not ours).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field

import requests

from tritonllm.client import (Client, InvalidRequestError, ServerBusyError, ServerError,
                              TimeoutError)

from .tally import ABANDONED, COMPLETED, EXPECTED, REJECTED

PROMPTS = ("The capital of France is", "Write a haiku about the sea.",
           "Explain what a KV cache is in one sentence.", "List three prime numbers:",
           "Once upon a time, in a small village,")
BAD_OPTIONS = ({"max_tokens": 0}, {"top_p": 2.0})
SHORT_TIMEOUT_S = 0.3


class UnexpectedSuccess(Exception):
    """A request that had to be refused (a bad input) was answered."""


@dataclass
class Endpoints:
    """One worker's connections: a Client per protocol, one with a deliberately short
    ``timeout``, and the OpenAI frontend's base URL (None: no OpenAI kinds)."""

    http: Client
    grpc: Client
    short: Client
    openai_url: str | None
    openai_model: str | None
    session: requests.Session = field(default_factory=requests.Session)

    def client(self, rng: random.Random) -> Client:
        return self.http if rng.random() < 0.5 else self.grpc

    def close(self) -> None:
        for c in (self.http, self.grpc, self.short):
            c.close()
        self.session.close()


def _prompt(rng: random.Random) -> tuple[str, int]:
    return rng.choice(PROMPTS), rng.randint(8, 40)


def _sampling(rng: random.Random) -> dict:
    return {"temperature": 0.8, "top_p": 0.95, "seed": rng.randrange(2**31)}


def generate(client: Client, rng: random.Random, **sampling) -> str:
    prompt, n = _prompt(rng)
    client.generate(prompt, max_tokens=n, **sampling)
    return COMPLETED


def stream(client: Client, rng: random.Random, **sampling) -> str:
    prompt, n = _prompt(rng)
    for _ in client.stream(prompt, max_tokens=n, **sampling):
        pass
    return COMPLETED


def disconnect(ends: Endpoints, rng: random.Random) -> str:
    """Open a stream, read its first chunk, close the iterator: the client sends the stop."""
    chunks = ends.client(rng).stream(_prompt(rng)[0], max_tokens=200)
    try:
        next(chunks)
    finally:
        chunks.close()
    return ABANDONED


def bad_input(ends: Endpoints, rng: random.Random) -> str:
    """A refused option must come back as InvalidRequestError, whether streamed or not."""
    client, bad = ends.client(rng), rng.choice(BAD_OPTIONS)
    try:
        if rng.random() < 0.5:
            client.generate(PROMPTS[0], **bad)
        else:
            list(client.stream(PROMPTS[0], **bad))
    except InvalidRequestError:
        return EXPECTED
    raise UnexpectedSuccess(f"{bad} was answered")


def short_timeout(ends: Endpoints, rng: random.Random) -> str:
    """A long request on a client with a short ``timeout``: TimeoutError (and a stop) expected;
    finishing in time counts as completed."""
    try:
        ends.short.generate(_prompt(rng)[0], max_tokens=200)
    except TimeoutError:
        return EXPECTED
    return COMPLETED


def _openai_post(ends: Endpoints, body: dict, *, stream: bool) -> requests.Response:
    body = {"model": ends.openai_model, "stream": stream, **body}
    response = ends.session.post(f"{ends.openai_url}/v1/completions", json=body, stream=stream,
                                 timeout=(10, 300))
    if response.status_code == 503:
        raise ServerBusyError(response.text, http_status=503)
    return response


def _raise_for(response: requests.Response) -> None:
    if response.status_code != 200:
        raise ServerError(response.text[:300], http_status=response.status_code)


def _sse_data(response: requests.Response):
    """The ``data:`` payloads of an SSE body as dicts, up to ``[DONE]``; an in-band error
    event raises ServerError."""
    for line in response.iter_lines():
        if not line.startswith(b"data:"):
            continue
        data = line[5:].strip()
        if data == b"[DONE]":
            return
        event = json.loads(data)
        if "error" in event:
            raise ServerError(json.dumps(event["error"])[:300])
        yield event


def openai_completion(ends: Endpoints, rng: random.Random) -> str:
    prompt, n = _prompt(rng)
    sampling = {"temperature": 0.8, "seed": rng.randrange(2**31)} if rng.random() < 0.5 else {}
    with _openai_post(ends, {"prompt": prompt, "max_tokens": n, **sampling},
                      stream=False) as response:
        _raise_for(response)
        response.json()["choices"][0]["text"]
    return COMPLETED


def openai_stream(ends: Endpoints, rng: random.Random) -> str:
    prompt, n = _prompt(rng)
    with _openai_post(ends, {"prompt": prompt, "max_tokens": n}, stream=True) as response:
        _raise_for(response)
        for _ in _sse_data(response):
            pass
    return COMPLETED


def openai_disconnect(ends: Endpoints, rng: random.Random) -> str:
    """A streamed completion closed after its first event: the frontend stops the request."""
    with _openai_post(ends, {"prompt": _prompt(rng)[0], "max_tokens": 200},
                      stream=True) as response:
        _raise_for(response)
        next(_sse_data(response))
    return ABANDONED


def openai_bad_input(ends: Endpoints, rng: random.Random) -> str:
    with _openai_post(ends, {"prompt": PROMPTS[0], "max_tokens": 0}, stream=False) as response:
        if response.status_code == 400:
            return EXPECTED
        raise UnexpectedSuccess(f"max_tokens 0 got HTTP {response.status_code}")


# kind -> (weight, function). The OpenAI kinds are dropped when there is no OpenAI URL.
MIX = {
    "http_generate_greedy": (12, lambda e, r: generate(e.http, r)),
    "http_stream_sampled": (12, lambda e, r: stream(e.http, r, **_sampling(r))),
    "grpc_generate_sampled": (12, lambda e, r: generate(e.grpc, r, **_sampling(r))),
    "grpc_stream_greedy": (12, lambda e, r: stream(e.grpc, r)),
    "disconnect": (10, disconnect),
    "bad_input": (8, bad_input),
    "short_timeout": (6, short_timeout),
    "openai_completion": (10, openai_completion),
    "openai_stream": (10, openai_stream),
    "openai_disconnect": (4, openai_disconnect),
    "openai_bad_input": (4, openai_bad_input),
}


def mix(with_openai: bool) -> dict:
    """The kinds in play: ``{name: (weight, function)}``."""
    return {k: v for k, v in MIX.items() if with_openai or not k.startswith("openai_")}


def classify(exc: BaseException) -> str:
    """The outcome of a request that raised ``exc``: ``rejected`` for ServerBusyError, else
    ``error:<exception type>``."""
    if isinstance(exc, ServerBusyError):
        return REJECTED
    return f"error:{type(exc).__name__}"
