"""The public surface of tritonllm.client is small and pinned."""

import builtins

import tritonllm.client as client


def test_exported_names_are_pinned():
    assert client.__all__ == [
        "AsyncClient", "Chunk", "Client", "Completion", "ConnectionError", "GenerationOptions",
        "InvalidRequestError", "ServerBusyError", "ServerError", "TimeoutError", "TritonLLMError",
    ]
    for name in client.__all__:
        assert getattr(client, name).__module__.startswith("tritonllm.client")


def test_exception_tree_matches_the_docstring():
    assert issubclass(client.ServerError, client.TritonLLMError)
    assert issubclass(client.InvalidRequestError, client.ServerError)
    assert issubclass(client.ServerBusyError, client.ServerError)
    assert issubclass(client.ConnectionError, client.TritonLLMError)
    assert issubclass(client.ConnectionError, builtins.ConnectionError)
    assert issubclass(client.TimeoutError, client.TritonLLMError)
    assert issubclass(client.TimeoutError, builtins.TimeoutError)
    for name in ("TritonLLMError", "ServerError", "InvalidRequestError", "ServerBusyError",
                 "ConnectionError", "TimeoutError"):
        assert name in client.__doc__


def test_importing_the_client_leaves_transports_and_torch_unloaded():
    import subprocess
    import sys

    heavy = ("torch", "grpc", "requests", "aiohttp")
    code = f"import sys, tritonllm.client; print(sorted(m for m in {heavy} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
