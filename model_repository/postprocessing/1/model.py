"""Triton adapter for postprocessing: token ids -> text (logic: tritonllm.models.postprocess).

Inputs (batch first): TOKENS_BATCH INT32 [beam, len], SEQUENCE_LENGTH INT32 [beam].
Output: OUTPUT BYTES [batch x beam] (1-D, as tensorrtllm_backend's postprocessing sends it),
UTF-8 text. For streams, each OUTPUT is the text
delta of that response; the deltas concatenate to the non-streamed text (state keyed by request
id when the request parameter ``incremental_detokenize`` is true, so this model runs as a single
instance).
"""

import json

import triton_python_backend_utils as pb_utils

from tritonllm.contract import POSTPROCESSING
from tritonllm.models import triton
from tritonllm.models.postprocess import Postprocessor, wants_incremental
from tritonllm.serve.lifeline import exit_when_orphaned
from tritonllm.tokenizer import TextCodec


class TritonPythonModel:
    def initialize(self, args):
        self.orphan_watch = exit_when_orphaned()  # never outlive tritonserver
        params = triton.parameters(args)
        self.postprocess = Postprocessor(TextCodec.from_dir(params["tokenizer_dir"]))

    def execute(self, requests):
        return [triton.respond(pb_utils, r, POSTPROCESSING, self._handler(r)) for r in requests]

    def _handler(self, request):
        def handle(inputs):
            incremental = wants_incremental(json.loads(request.parameters() or "{}"))
            return self.postprocess(inputs, request.request_id(), incremental)
        return handle
