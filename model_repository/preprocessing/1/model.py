"""Triton adapter for preprocessing: prompt text -> token ids (logic: tritonllm.models.preprocess).

Inputs (batch first): QUERY BYTES [1] prompt, or a JSON array of chat messages when
APPLY_CHAT_TEMPLATE is true; REQUEST_OUTPUT_LEN INT32 [1]; optional BAD_WORDS_DICT /
STOP_WORDS_DICT BYTES [-1]; END_ID / PAD_ID INT32 [1] (default: the tokenizer's).
Outputs: INPUT_ID INT32 [-1], REQUEST_INPUT_LEN INT32 [1], REQUEST_OUTPUT_LEN INT32 [1],
BAD_WORDS_IDS / STOP_WORDS_IDS INT32 [2, -1] (TensorRT-LLM word lists), OUT_END_ID, OUT_PAD_ID.
A bad request gets INVALID_ARG naming the field and the limit; the model keeps serving.
"""

import triton_python_backend_utils as pb_utils

from tritonllm.contract import PREPROCESSING
from tritonllm.models import triton
from tritonllm.models.preprocess import Limits, Preprocessor
from tritonllm.process import exit_when_orphaned
from tritonllm.tokenizer import TextCodec


class TritonPythonModel:
    def initialize(self, args):
        self.orphan_watch = exit_when_orphaned()  # never outlive tritonserver
        params = triton.parameters(args)
        codec = TextCodec.from_dir(params["tokenizer_dir"])
        self.preprocess = Preprocessor(codec, Limits.from_parameters(params))

    def execute(self, requests):
        return [triton.respond(pb_utils, r, PREPROCESSING, self.preprocess) for r in requests]
