"""Triton adapter for the CPU engine step ``tensorrt_llm`` (logic: tritonllm.engine and
tritonllm.models.engine_step). On GPU this model is TensorRT-LLM's own ``tensorrtllm`` backend
with the same tensors; this file is not used there.

``execute`` queues each request on the inflight-batching engine and returns at once; responses
go through the request's response sender from the engine thread, so requests that arrive while
others run join the running batch in both deployment modes:

- decoupled (default): streaming requests get one response per step that produced tokens (new
  tokens only), the last with the FINAL flag; non-streaming requests get exactly one response.
- not decoupled (``decoupled_mode`` false, for unary ModelInfer / HTTP ``infer``): exactly one
  response per request; ``streaming=true`` is refused, as TensorRT-LLM's backend refuses it.

Inputs and outputs: see ``tritonllm.models.engine_step``. A bad request gets INVALID_ARG naming
the field and the limit; a cancelled request (client gone, or ``stop``) frees its KV cache at
the next step after it is seen: the engine asks Triton at most every
``cancellation_check_period_ms`` (default 100) per request, as TensorRT-LLM's backend does.
A streamed request whose responses postprocessing stops acknowledging for
``abandoned_stream_timeout_ms`` (the ensemble was cancelled: tritonllm.models.delivery) is
stopped the same way.
Responses are sent from a thread of their own (``triton.ResponseQueue``), not the engine's.
If the engine's step loop dies, the requests in flight get an INTERNAL error and this stub
exits (tritonllm.models.crash), which the supervisor sees.
"""

import json
import uuid

import triton_python_backend_utils as pb_utils

from tritonllm.contract import DELIVERY_TICKET, TENSORRT_LLM
from tritonllm.engine import EngineConfig, LLMEngine
from tritonllm.models import crash, engine_step, triton
from tritonllm.models.delivery import DeliveryWatch
from tritonllm.models.metrics import EngineMetrics
from tritonllm.process import exit_when_orphaned
from tritonllm.tokenizer import InvalidInputError

FINAL = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL


class TritonPythonModel:
    def initialize(self, args):
        self.orphan_watch = exit_when_orphaned()  # never outlive tritonserver
        params = triton.parameters(args)
        self.settings = engine_step.StepSettings.from_model_config(json.loads(args["model_config"]))
        config = EngineConfig.from_parameters(params)
        # with the tokenizer, the engine serves guided decoding (guided_decoding_guide_type)
        self.engine = LLMEngine(params["model_dir"], config, tokenizer=params.get("tokenizer_dir"))
        # sent off the engine thread; at most two steps' worth wait
        self.responses = triton.ResponseQueue(max_waiting=2 * config.max_batch_size)
        self.inflight = crash.InFlight()
        self.engine.on_fatal = crash.on_engine_fatal(self.inflight, self._send_then_exit)
        self.engine.start()
        self.metrics = EngineMetrics(pb_utils, args["model_name"])
        self.metrics.set_stats(self.engine.stats())
        self.stop_metrics = self.metrics.refresh_every(0.5, self.engine.stats)
        self.live = {}  # Triton request id -> engine request id, for the ``stop`` input
        timeout_ms = self.settings.abandoned_stream_timeout_ms
        self.delivery = (DeliveryWatch(timeout_ms / 1000)
                         if timeout_ms and self.settings.decoupled else None)

    def execute(self, requests):
        triton.submit_each(pb_utils, requests, self._submit)
        return None

    def _submit(self, request, sender):
        inputs = triton.read_inputs(pb_utils, request, TENSORRT_LLM)
        if engine_step.stop_requested(inputs):
            if not request.request_id():
                raise InvalidInputError("stop: send it with the id of the request to stop")
            self.engine.cancel(self.live.get(request.request_id(), ""))
            # Exactly one response: HTTP generate refuses a model that sends none.
            sender.send(pb_utils.InferenceResponse(output_tensors=[]), flags=FINAL)
            return
        engine_id = uuid.uuid4().hex  # Triton ids are often reused ("1"); ours must be unique
        generation, wants = engine_step.parse_request(engine_id, inputs, self.settings,
                                                      timeout_us=request.timeout())
        if request.request_id():
            self.live[request.request_id()] = engine_id

        watch = self.delivery if generation.streaming else None
        key = watch.open() if watch else None

        def forget():  # when the request ends, or is never queued (refused as busy)
            if self.live.get(request.request_id()) == engine_id:
                self.live.pop(request.request_id(), None)
            if watch:
                watch.close_key(key)

        def finished(output):
            forget()
            self.metrics.request_finished(output, self.engine.stats())

        def to_outputs(output):
            tensors = engine_step.output_tensors(output, wants, shaper.preceding)
            if watch:
                tensors[DELIVERY_TICKET] = watch.ticket(key)
            return tensors

        def cancelled():
            return sender.is_cancelled() or (watch is not None and watch.abandoned(key))

        shaper = engine_step.StreamShaper(self.settings.stream_interval)
        send = triton.engine_output_sender(
            pb_utils, sender, to_outputs, finished,
            self.responses, on_send_error=lambda _: self.engine.cancel(engine_id))
        on_output = self.inflight.track(engine_id, engine_step.shaped(shaper, send))
        is_cancelled = triton.polled(cancelled,
                                     self.settings.cancellation_check_period_ms / 1000)
        try:
            self.engine.submit(generation, on_output, is_cancelled=is_cancelled)
        except BaseException:
            self.inflight.forget(engine_id)
            forget()
            raise

    def _send_then_exit(self):
        """The engine died: send the error responses ``fail_all`` queued, then end the stub."""
        self.responses.close(timeout=10)
        crash.exit_process()

    def finalize(self):
        self.stop_metrics.set()
        self.engine.shutdown()  # requests in flight get their final (cancelled) responses
        self.responses.close(timeout=10)
        if self.delivery:
            self.delivery.close()
