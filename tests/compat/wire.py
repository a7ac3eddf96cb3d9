"""Requests on the wire as tensorrtllm_backend's client scripts send them (inflight_batcher_llm
at commit c2e65b88): numpy arrays with a batch dimension of 1, dtypes from numpy through
``np_to_triton_dtype``, and the tritonclient calls those scripts make. Written from the wire
facts in docs/compatibility.md; no code of theirs."""

from __future__ import annotations

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import np_to_triton_dtype


def text(value: str) -> np.ndarray:
    """A BYTES input as the scripts build it: ``np.array([[value]]).astype(object)``."""
    return np.array([[value]]).astype(object)


def words(values: list[str]) -> np.ndarray:
    return np.array([values]).astype(object)


def i32(value) -> np.ndarray:
    return np.array([[value]], dtype=np.int32)


def f32(value) -> np.ndarray:
    return np.array([[value]], dtype=np.float32)


def flag(value: bool) -> np.ndarray:
    return np.array([[value]], dtype=bool)


def ids(token_ids: list[int]) -> np.ndarray:
    return np.array([token_ids], dtype=np.int32)


def inputs(module, values: dict[str, np.ndarray]) -> list:
    """``module`` is ``tritonclient.grpc`` or ``tritonclient.http``."""
    result = []
    for name, array in values.items():
        tensor = module.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
        tensor.set_data_from_numpy(array)
        result.append(tensor)
    return result


def outputs(module, names: list[str] | None) -> list | None:
    return None if names is None else [module.InferRequestedOutput(n) for n in names]


def grpc_client(server) -> grpcclient.InferenceServerClient:
    return grpcclient.InferenceServerClient(server.grpc_url)


def http_client(server) -> httpclient.InferenceServerClient:
    return httpclient.InferenceServerClient(server.http_url, network_timeout=300.0)


def infer(server, protocol: str, model: str, values: dict, output_names=None,
          request_id: str = ""):
    """Unary ModelInfer (gRPC) or HTTP ``/infer``, as the non-streaming scripts call it."""
    module = grpcclient if protocol == "grpc" else httpclient
    client = grpc_client(server) if protocol == "grpc" else http_client(server)
    return client.infer(model, inputs(module, values), outputs=outputs(module, output_names),
                        request_id=request_id)


def stream(server, model: str, values: dict, output_names=None, request_id: str = ""):
    """``start_stream`` / ``async_stream_infer`` / ``stop_stream``, as end_to_end_grpc_client.py
    does even for non-streaming requests: every result of the stream, errors raised."""
    results, errors = [], []
    client = grpc_client(server)
    client.start_stream(callback=lambda result, error: (errors if error else results).append(
        error or result))
    try:
        client.async_stream_infer(model, inputs(grpcclient, values),
                                  outputs=outputs(grpcclient, output_names),
                                  request_id=request_id)
    finally:
        client.stop_stream()  # waits for the stream to finish
    if errors:
        raise errors[0]
    return results
