"""Python client of the tritonllm deployment: the ``ensemble`` model over HTTP or gRPC, sync or
asyncio, streamed or not, plain prompts or chat messages.

    from tritonllm.client import Client

    with Client() as client:                          # HTTP, localhost:8000
        print(client.generate("The capital of France is", max_tokens=16).text)
        for chunk in client.stream("Tell me a story", max_tokens=64):
            print(chunk.text, end="", flush=True)

    async with AsyncClient(protocol="grpc") as client:  # gRPC, localhost:8001
        reply = await client.chat([{"role": "user", "content": "Hi!"}])

Options are keyword-only :class:`GenerationOptions` fields. ``exclude_input_in_output`` is True
by default, so texts hold the completion only (the server, like TensorRT-LLM, would otherwise
return prompt + completion). Every request carries a unique id (a uuid4 unless given).

Exceptions (nothing from tritonclient, grpc, requests or aiohttp leaks out)::

    TritonLLMError
     ├── ServerError            the server answered with an error: .message (the server's),
     │    │                     .http_status or .grpc_code
     │    ├── InvalidRequestError   HTTP 400 / gRPC INVALID_ARGUMENT or an in-band stream error:
     │    │                         the request is at fault; the message names the field
     │    └── ServerBusyError       HTTP 503 / a full queue ("Exceeds maximum queue size"):
     │                              nothing ran; retry later
     ├── ConnectionError        cannot reach the server / connection lost (also a builtin
     │                          ConnectionError)
     └── TimeoutError           the request outlived ``timeout`` (also a builtin TimeoutError)

ValueError (naming the field) is raised before sending when an option cannot be encoded in its
tensor's dtype; TypeError for an unknown option name.
"""

from ._client import AsyncClient, Client
from ._errors import (
    ConnectionError,
    InvalidRequestError,
    ServerBusyError,
    ServerError,
    TimeoutError,
    TritonLLMError,
)
from ._options import GenerationOptions
from ._results import Chunk, Completion

__all__ = [
    "AsyncClient",
    "Chunk",
    "Client",
    "Completion",
    "ConnectionError",
    "GenerationOptions",
    "InvalidRequestError",
    "ServerBusyError",
    "ServerError",
    "TimeoutError",
    "TritonLLMError",
]
