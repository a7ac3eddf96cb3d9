"""SYNTHETIC ``tensorrt_llm`` step, for ``tritonllm bench ensemble`` only (never model results).

Same tensors, validation and response shaping as the real CPU step
(``model_repository/tensorrt_llm/1/model.py``: ``tritonllm.models.engine_step``), but the
engine is :class:`tritonllm.bench.synthetic.ReplayEngine`, which replays fixed token ids as fast
as asked (model parameter ``steps_per_second``, 0: unlimited). Parameter ``send_preceding``
false leaves out ``preceding_ids`` (to measure the stateful postprocessing path).
"""

import json
import uuid

import triton_python_backend_utils as pb_utils

from tritonllm.bench.synthetic import ReplayEngine, replay_ids
from tritonllm.contract import TENSORRT_LLM, parse_bool
from tritonllm.models import engine_step, triton
from tritonllm.process import exit_when_orphaned
from tritonllm.tokenizer import TextCodec


class TritonPythonModel:
    def initialize(self, args):
        self.orphan_watch = exit_when_orphaned()  # never outlive tritonserver
        params = triton.parameters(args)
        self.settings = engine_step.StepSettings.from_model_config(json.loads(args["model_config"]))
        self.send_preceding = parse_bool(params.get("send_preceding", "true"), "send_preceding")
        codec = TextCodec.from_dir(params["tokenizer_dir"])
        self.engine = ReplayEngine(replay_ids(codec, 4096),
                                   float(params.get("steps_per_second", "0")),
                                   emit_every=self.settings.stream_interval)
        self.responses = triton.ResponseQueue()
        self.engine.start()

    def execute(self, requests):
        triton.submit_each(pb_utils, requests, self._submit)
        return None

    def _submit(self, request, sender):
        inputs = triton.read_inputs(pb_utils, request, TENSORRT_LLM)
        generation, wants = engine_step.parse_request(uuid.uuid4().hex, inputs, self.settings)
        shaper = engine_step.StreamShaper(self.settings.stream_interval)

        def to_outputs(output):
            tensors = engine_step.output_tensors(output, wants, shaper.preceding)
            if not self.send_preceding:
                tensors.pop("preceding_ids", None)
            return tensors

        send = triton.engine_output_sender(pb_utils, sender, to_outputs, lambda _: None,
                                           self.responses)
        self.engine.submit(generation, engine_step.shaped(shaper, send), sender.is_cancelled)

    def finalize(self):
        self.engine.shutdown()
        self.responses.close(timeout=10)
