"""One OpenAI request run against the ensemble: the text as it may be sent, then how it ended.

Streamed from the ensemble (gRPC, exact incremental detokenization) whether or not the HTTP
client streams, when the deployment is decoupled: stop strings are found as the text arrives
and end the engine request at once, and the frontend measures time to first token for every
request. A deployment that is not decoupled answers each request once: its whole text is
then the only delta.

Leaving the iteration early (a stop string, a client that disconnected, a cancelled task)
abandons the ensemble stream; :class:`tritonllm.client.AsyncClient` then sends TensorRT-LLM's
``stop`` for the request, which frees its KV cache at the next engine step.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from dataclasses import dataclass

from tritonllm.client import AsyncClient, Chunk, TritonLLMError

from .errors import from_client_error
from .logprobs import TokenLogprob
from .protocol import GenerationCall
from .stops import StopScanner


@dataclass(frozen=True)
class Delta:
    """Text to send, in order; the deltas of a request concatenate to its whole text.
    ``tokens``: the log probabilities of the tokens this text came from, when asked for."""

    text: str
    tokens: tuple[TokenLogprob, ...] = ()


@dataclass(frozen=True)
class Finish:
    """The last event: ``reason`` is ``"stop"`` (end of sequence or a stop string) or
    ``"length"`` (``max_tokens`` reached). ``completion_tokens`` counts every token generated,
    the end-of-sequence token included when the reply ended on it (as vLLM counts; the
    engine's ``num_output_tokens`` leaves it out, as TensorRT-LLM's does)."""

    reason: str
    prompt_tokens: int
    completion_tokens: int

    @property
    def usage(self) -> dict[str, int]:
        return {"prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens,
                "total_tokens": self.prompt_tokens + self.completion_tokens}


@dataclass
class _Counts:
    prompt: int = 0
    completion: int = 0

    def update(self, chunk) -> None:
        if chunk.num_input_tokens is not None:
            self.prompt = chunk.num_input_tokens
        if chunk.num_output_tokens is not None:
            self.completion = chunk.num_output_tokens


async def generate(client: AsyncClient, call: GenerationCall, *,
                   decoupled: bool = True) -> AsyncIterator[Delta | Finish]:
    """Deltas (never empty), then one Finish. Errors of the ensemble request are raised as
    :class:`~tritonllm.openai.errors.OpenAIError` naming the request's field."""
    scanner, counts = StopScanner(call.options.stop), _Counts()
    chunks = _stream(client, call) if decoupled else _whole(client, call)
    pending: list[TokenLogprob] = []  # tokens whose text has not gone out yet
    try:
        async for chunk in chunks:
            counts.update(chunk)
            pending.extend(_token_logprobs(chunk))
            text, matched = scanner.feed(chunk.text)
            if text:
                yield Delta(text, tuple(pending))
                pending = []
            if matched:
                break
    except TritonLLMError as exc:
        raise from_client_error(exc, call.renames) from None
    finally:
        await chunks.aclose()  # before the end of the stream: stops the engine request
    if tail := scanner.flush():
        yield Delta(tail, tuple(pending))
    reason = _reason(scanner.matched, counts.completion, call.max_tokens)
    ended_on_eos = reason == "stop" and not scanner.matched
    yield Finish(reason, counts.prompt, counts.completion + ended_on_eos)


def _token_logprobs(chunk) -> list[TokenLogprob]:
    if chunk.token_ids is None or chunk.log_probs is None:
        return []
    tops = chunk.top_log_probs or [()] * len(chunk.token_ids)
    return [TokenLogprob(t, p, tuple(top))
            for t, p, top in zip(chunk.token_ids, chunk.log_probs, tops)]


def _stream(client: AsyncClient, call: GenerationCall):
    options = {f.name: getattr(call.options, f.name)
               for f in dataclasses.fields(call.options)}
    if call.chat:
        return client.chat_stream(list(call.messages), tools=_tools(call), **options)
    return client.stream(call.prompt, **options)


def _tools(call: GenerationCall) -> list[dict] | None:
    """The tools the model sees: none for ``tool_choice: "none"``."""
    return list(call.tools.tools) if call.tools.active else None


async def _whole(client: AsyncClient, call: GenerationCall):
    """One request, one response (a deployment that is not decoupled), as a one-chunk stream."""
    options = {f.name: getattr(call.options, f.name) for f in dataclasses.fields(call.options)}
    if call.chat:
        completion = await client.chat(list(call.messages), tools=_tools(call), **options)
    else:
        completion = await client.generate(call.prompt, **options)
    yield Chunk(text=completion.text, index=0, arrival_s=completion.e2e_s,
                log_probs=completion.log_probs,
                num_input_tokens=completion.num_input_tokens,
                num_output_tokens=completion.num_output_tokens,
                token_ids=completion.token_ids, top_log_probs=completion.top_log_probs)


def _reason(matched_stop: bool, completion_tokens: int, max_tokens: int) -> str:
    if matched_stop or completion_tokens < max_tokens:
        return "stop"
    return "length"
