"""Triton adapter for postprocessing: token ids -> text (logic: tritonllm.models.postprocess).

Inputs (batch first): TOKENS_BATCH INT32 [beam, len], SEQUENCE_LENGTH INT32 [beam], optional
PRECEDING_IDS INT32 [beam, <=8] (the generated ids sent before this streamed response).
Optional DELIVERY_TICKET INT64 [2] (the CPU engine's, on streamed responses) is acknowledged
to the engine step, which so learns that the ensemble still forwards the stream
(tritonllm.models.delivery).
Output: OUTPUT BYTES [batch x beam] (1-D, as tensorrtllm_backend's postprocessing sends it),
UTF-8 text. For streams, each OUTPUT is the text delta of that response; the deltas concatenate
to the non-streamed text. With PRECEDING_IDS (the CPU engine sends it) each response is decoded
on its own, so this model runs as several instances; without it, the request parameter
``incremental_detokenize`` selects per-request state (exact with one instance only).
All requests of one ``execute`` (dynamic batching) are decoded in one tokenizer call.
"""

import json

import triton_python_backend_utils as pb_utils

from tritonllm.contract import POSTPROCESSING
from tritonllm.models import triton
from tritonllm.models.delivery import Acknowledger
from tritonllm.models.postprocess import Postprocessor, wants_incremental
from tritonllm.process import exit_when_orphaned
from tritonllm.tokenizer import FastDecoder


class TritonPythonModel:
    def initialize(self, args):
        self.orphan_watch = exit_when_orphaned()  # never outlive tritonserver
        params = triton.parameters(args)
        self.postprocess = Postprocessor(FastDecoder.from_dir(params["tokenizer_dir"]))
        self.acknowledger = Acknowledger()

    def execute(self, requests):
        try:
            batch = [self._read(r) for r in requests]
            for inputs, _, _ in batch:
                if "DELIVERY_TICKET" in inputs:
                    self.acknowledger.send(inputs["DELIVERY_TICKET"])
            outputs = self.postprocess.batch(batch)
        except Exception:  # noqa: BLE001 - one bad request: answer each on its own
            return [triton.respond(pb_utils, r, POSTPROCESSING, self._handler(r))
                    for r in requests]
        return [pb_utils.InferenceResponse(output_tensors=triton.to_tensors(pb_utils, out))
                for out in outputs]

    @staticmethod
    def _read(request):
        inputs = triton.read_inputs(pb_utils, request, POSTPROCESSING)
        if "PRECEDING_IDS" in inputs:  # stateless: no request id or parameter needed
            return inputs, "", False
        return (inputs, request.request_id(),
                wants_incremental(json.loads(request.parameters() or "{}")))

    def _handler(self, request):
        def handle(inputs):
            incremental = wants_incremental(json.loads(request.parameters() or "{}"))
            return self.postprocess(inputs, request.request_id(), incremental)
        return handle
