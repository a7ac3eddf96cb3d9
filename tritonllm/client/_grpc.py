"""gRPC transports: Triton's bidirectional ``ModelStreamInfer``, one stream per request.

Every request, streamed or not, goes over the stream: it works in both deployment modes
(a decoupled deployment refuses unary ``ModelInfer``). Each request opens its own stream and
half-closes it at once; Triton ends the stream after the request's last response, which is how
the end is seen. A stream the caller leaves early (or that brought an error) is read to its end
for up to ``STOP_DRAIN_S`` before it is cancelled: the caller has sent a stop by then, and a
cancelled ensemble stream costs Triton 2.51 memory it never returns.
A model's error for the request arrives in-band on the stream, as a message without a status
code (Triton's opt-in ``triton_grpc_error`` status mode crashed Triton 2.51 here; see
``_errors.error_from_grpc`` for how in-band errors are classified).

The protocol pieces are tritonclient's (generated stubs and messages, byte-tensor
serialization, ``InferResult`` for decoding outputs). Its ``start_stream`` wrapper is not used:
it allows one stream per client and leaves a thread blocked when a stream is cancelled; the
plain stub gives one stream per request, cancelled at once when the caller stops reading.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import threading
from collections.abc import AsyncIterator, Iterator

from ._errors import ServerError, error_from_grpc
from ._request import STOP_DRAIN_S, InferRequest
from ._results import Outputs

_MAX_MESSAGE = 2**31 - 1  # Triton's own limit (tritonclient uses the same)
_CHANNEL_OPTIONS = [("grpc.max_send_message_length", _MAX_MESSAGE),
                    ("grpc.max_receive_message_length", _MAX_MESSAGE)]


def request_proto(request: InferRequest):
    """The ``ModelInferRequest`` message: inputs with raw contents, the request id as ``id``."""
    from tritonclient.grpc import service_pb2
    from tritonclient.utils import np_to_triton_dtype, serialize_byte_tensor

    proto = service_pb2.ModelInferRequest(model_name=request.model, id=request.request_id)
    for key, value in request.parameters.items():
        proto.parameters[key].bool_param = value
    for name, array in request.inputs.items():
        dtype = np_to_triton_dtype(array.dtype)
        proto.inputs.add(name=name, datatype=dtype, shape=array.shape)
        raw = serialize_byte_tensor(array).item() if dtype == "BYTES" else array.tobytes()
        proto.raw_input_contents.append(raw)
    return proto


class TextDecoder:
    """Decodes a stream's BYTES outputs as UTF-8 across responses, so a character split
    between two responses still comes out whole."""

    def __init__(self) -> None:
        self._utf8 = codecs.getincrementaldecoder("utf-8")()

    def decode(self, values, final: bool = False) -> list[str]:
        try:
            return [self._utf8.decode(bytes(v), final) for v in values]
        except UnicodeDecodeError as exc:
            raise ServerError(f"the server sent text_output that is not UTF-8: {exc}") from None


def outputs_from_stream_response(response, decoder: TextDecoder) -> Outputs | None:
    """One ``ModelStreamInferResponse`` -> Outputs (None when it carries no outputs); an
    in-band error message raises."""
    from tritonclient.grpc import InferResult

    if response.error_message:
        raise error_from_grpc(None, response.error_message)
    result = InferResult(response.infer_response)
    outputs = {}
    for output in response.infer_response.outputs:
        values = result.as_numpy(output.name).reshape(-1).tolist()
        outputs[output.name] = decoder.decode(values) if output.datatype == "BYTES" else values
    return outputs or None


def _finish(decoder: TextDecoder) -> None:
    decoder.decode([b""], final=True)  # raises if the stream ended inside a character


def _end(call) -> None:
    """Let a stream end on its own (at most STOP_DRAIN_S), then cancel it (a no-op once ended)."""
    import grpc

    if call.is_active():
        timer = threading.Timer(STOP_DRAIN_S, call.cancel)
        timer.daemon = True
        timer.start()
        try:
            for _ in call:
                pass
        except grpc.RpcError:
            pass  # cancelled by the timer, or the stream failed: either way it is over
        finally:
            timer.cancel()
    call.cancel()


async def _aend(call) -> None:
    """:func:`_end` for a ``grpc.aio`` stream."""
    import grpc

    if not call.done():
        with contextlib.suppress(grpc.RpcError, asyncio.TimeoutError):
            async with asyncio.timeout(STOP_DRAIN_S):
                async for _ in call:
                    pass
    call.cancel()


@contextlib.contextmanager
def _mapped_errors():
    import grpc

    try:
        yield
    except grpc.RpcError as exc:
        raise error_from_grpc(exc.code().name, exc.details() or str(exc)) from None


class GrpcTransport:
    """Sync gRPC transport over one channel (thread-safe; streams may run concurrently).
    ``timeout``: seconds a request may take in all (the stream's deadline; None: no limit);
    ``connect_timeout``: seconds for the health calls."""

    def __init__(self, url: str, *, timeout: float | None, connect_timeout: float):
        import grpc
        from tritonclient.grpc import service_pb2, service_pb2_grpc

        self._pb = service_pb2
        self._channel = grpc.insecure_channel(url, options=_CHANNEL_OPTIONS)
        self._stub = service_pb2_grpc.GRPCInferenceServiceStub(self._channel)
        self._timeout = timeout
        self._connect_timeout = connect_timeout

    def infer(self, request: InferRequest) -> Iterator[Outputs]:
        decoder = TextDecoder()
        with _mapped_errors():
            call = self._stub.ModelStreamInfer(
                iter([request_proto(request)]), timeout=self._timeout)
            try:
                for response in call:
                    if (outputs := outputs_from_stream_response(response, decoder)) is not None:
                        yield outputs
                _finish(decoder)
            finally:
                _end(call)

    def live(self) -> bool:
        return self._unary("ServerLive", self._pb.ServerLiveRequest()).live

    def ready(self, model: str) -> bool:
        return (self._unary("ServerReady", self._pb.ServerReadyRequest()).ready
                and self._unary("ModelReady", self._pb.ModelReadyRequest(name=model)).ready)

    def _unary(self, method: str, message):
        with _mapped_errors():
            return getattr(self._stub, method)(message, timeout=self._connect_timeout)

    def close(self) -> None:
        self._channel.close()


class AsyncGrpcTransport:
    """Async gRPC transport over one ``grpc.aio`` channel, made on first use inside the
    running event loop. Timeouts as in :class:`GrpcTransport`."""

    def __init__(self, url: str, *, timeout: float | None, connect_timeout: float):
        from tritonclient.grpc import service_pb2

        self._pb = service_pb2
        self._url = url
        self._timeout = timeout
        self._connect_timeout = connect_timeout
        self._channel = None
        self._stub = None

    def _client(self):
        if self._stub is None:
            import grpc
            from tritonclient.grpc import service_pb2_grpc

            self._channel = grpc.aio.insecure_channel(self._url, options=_CHANNEL_OPTIONS)
            self._stub = service_pb2_grpc.GRPCInferenceServiceStub(self._channel)
        return self._stub

    async def infer(self, request: InferRequest) -> AsyncIterator[Outputs]:
        decoder = TextDecoder()
        with _mapped_errors():
            call = self._client().ModelStreamInfer(
                iter([request_proto(request)]), timeout=self._timeout)
            try:
                async for response in call:
                    if (outputs := outputs_from_stream_response(response, decoder)) is not None:
                        yield outputs
                _finish(decoder)
            finally:
                await _aend(call)

    async def live(self) -> bool:
        return (await self._unary("ServerLive", self._pb.ServerLiveRequest())).live

    async def ready(self, model: str) -> bool:
        server = await self._unary("ServerReady", self._pb.ServerReadyRequest())
        return server.ready and (
            await self._unary("ModelReady", self._pb.ModelReadyRequest(name=model))).ready

    async def _unary(self, method: str, message):
        with _mapped_errors():
            return await getattr(self._client(), method)(message, timeout=self._connect_timeout)

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
            self._channel = self._stub = None
