"""The tensor contract of the Triton model repository, declared once.

Names, dtypes and shapes follow tensorrtllm_backend's ``all_models/inflight_batcher_llm``
(TensorRT-LLM 1.1.x), so clients written for NVIDIA's deployment work unchanged against ours,
on GPU and on CPU. Everything that needs these facts reads them from here: the config renderer
(``tritonllm.repo``), the model.py adapters, the client and the load-test providers.

Shapes are given without the batch dimension, as in ``config.pbtxt`` (every model here has
``max_batch_size > 0``, so a client sends ``text_input`` as ``[batch, 1]``).

Ensemble wiring::

    text_input, max_tokens, stop_words, bad_words, end_id, pad_id, apply_chat_template
        -> preprocessing -> input_ids, input_lengths, request_output_len, stop/bad_words_list,
                            end_id, pad_id
        -> tensorrt_llm (decoupled; + the sampling inputs straight from the ensemble)
        -> output_ids, sequence_length -> postprocessing -> text_output
           (output_ids, cum_log_probs, output_log_probs, perf outputs go straight to the
           ensemble outputs too)

Extensions of ours, additive (clients that do not know them are unaffected):

- ``apply_chat_template`` (BOOL): when true, ``text_input`` holds chat messages as JSON that
  preprocessing renders with the model's chat template (see tritonllm.models.preprocess);
- ``num_top_log_probs`` (INT32, CPU engine): per generated token, this many most likely tokens
  come back in ``top_log_prob_ids`` / ``top_log_probs`` [beam, tokens, k];
- ``output_ids`` is an ensemble output too (the generated ids of each response), so clients can
  tell which token each log-probability belongs to.

Inputs marked ``supported=False`` are declared so that requests carrying them reach our code and
get a clear error naming the input, instead of Triton's generic "unexpected input".
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# Triton dtype name -> numpy dtype (BYTES/STRING travel as numpy object arrays of bytes).
NUMPY_DTYPES = {
    "STRING": np.object_,
    "BOOL": np.bool_,
    "INT32": np.int32,
    "INT64": np.int64,
    "UINT64": np.uint64,
    "FP16": np.float16,
    "FP32": np.float32,
    "UINT8": np.uint8,
}

# tritonclient spells the string type "BYTES"; config.pbtxt spells it "TYPE_STRING".
CLIENT_DTYPES = {"STRING": "BYTES"}

# Boolean text, as TensorRT-LLM's backend reads its config parameters (``GetParameter<bool>``)
# and as request parameters and workload files spell it. One parser, one writer.
_TRUE_TEXT = ("true", "1")
_FALSE_TEXT = ("false", "0")


def parse_bool(value, name: str) -> bool:
    """``True``/``False`` or the text ``true``/``false``/``1``/``0`` (any case) -> bool.

    Anything else raises ValueError naming ``name``: a typo must not quietly mean False.
    """
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    text = str(value).strip().lower()
    if text in _TRUE_TEXT:
        return True
    if text in _FALSE_TEXT:
        return False
    raise ValueError(f"{name}: expected true or false, got {value!r}")


def format_bool(value: bool) -> str:
    """The spelling :func:`parse_bool` reads and config.pbtxt parameters carry."""
    return "true" if value else "false"


@dataclass(frozen=True)
class Tensor:
    """One input or output of a Triton model.

    ``dims`` excludes the batch dimension. ``reshape`` is Triton's reshape (``()`` turns a
    ``[1]`` input into a per-request scalar). ``supported=False`` marks an input we declare for
    compatibility but reject at request time with an error naming it.
    """

    name: str
    dtype: str
    dims: tuple[int, ...]
    optional: bool = False
    reshape: tuple[int, ...] | None = None
    allow_ragged_batch: bool = False
    supported: bool = True

    @property
    def numpy_dtype(self) -> type:
        return NUMPY_DTYPES[self.dtype]

    @property
    def client_dtype(self) -> str:
        """The dtype string tritonclient's InferInput expects."""
        return CLIENT_DTYPES.get(self.dtype, self.dtype)


@dataclass(frozen=True)
class Step:
    """One ensemble step: ``input_map`` / ``output_map`` go model tensor -> ensemble tensor."""

    model_name: str
    input_map: dict[str, str]
    output_map: dict[str, str]


@dataclass(frozen=True)
class ModelContract:
    name: str
    inputs: tuple[Tensor, ...]
    outputs: tuple[Tensor, ...]
    steps: tuple[Step, ...] = field(default=())

    def input(self, name: str) -> Tensor:
        return _by_name(self.inputs, name, self.name)

    def output(self, name: str) -> Tensor:
        return _by_name(self.outputs, name, self.name)

    @property
    def unsupported_inputs(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.inputs if not t.supported)


def _by_name(tensors: tuple[Tensor, ...], name: str, model: str) -> Tensor:
    for tensor in tensors:
        if tensor.name == name:
            return tensor
    raise KeyError(f"{model} has no tensor named {name!r}")


def _scalar(name: str, dtype: str, *, supported: bool = True) -> Tensor:
    """An optional per-request scalar, sent as ``[batch, 1]``."""
    return Tensor(name, dtype, (1,), optional=True, reshape=(), supported=supported)


def _ensemble_scalar(name: str, dtype: str, *, supported: bool = True) -> Tensor:
    return Tensor(name, dtype, (1,), optional=True, supported=supported)


# --- the sampling inputs: ensemble name -> engine name (the anchor's mapping) ----------------

SAMPLING_INPUTS: tuple[tuple[str, str, str], ...] = (
    # (ensemble name, tensorrt_llm name, dtype)
    ("top_k", "runtime_top_k", "INT32"),
    ("top_p", "runtime_top_p", "FP32"),
    ("temperature", "temperature", "FP32"),
    ("length_penalty", "len_penalty", "FP32"),
    ("repetition_penalty", "repetition_penalty", "FP32"),
    ("presence_penalty", "presence_penalty", "FP32"),
    ("frequency_penalty", "frequency_penalty", "FP32"),
    ("min_tokens", "min_tokens", "INT32"),
    ("seed", "seed", "UINT64"),
    ("return_log_probs", "return_log_probs", "BOOL"),
    ("exclude_input_in_output", "exclude_input_in_output", "BOOL"),
    ("stream", "streaming", "BOOL"),
    ("beam_width", "beam_width", "INT32"),
    ("num_return_sequences", "num_return_sequences", "INT32"),
    ("return_perf_metrics", "return_perf_metrics", "BOOL"),
    ("return_num_input_tokens", "return_num_input_tokens", "BOOL"),
    ("return_num_output_tokens", "return_num_output_tokens", "BOOL"),
    ("num_top_log_probs", "num_top_log_probs", "INT32"),  # our extension (CPU engine)
    ("return_context_logits", "return_context_logits", "BOOL"),
    ("return_generation_logits", "return_generation_logits", "BOOL"),
)

# Declared for compatibility, refused with a clear error when a request carries them.
UNSUPPORTED_ENGINE_INPUTS: tuple[Tensor, ...] = (
    _scalar("lora_task_id", "UINT64", supported=False),
    Tensor("lora_weights", "FP16", (-1, -1), optional=True, allow_ragged_batch=True,
           supported=False),
    Tensor("lora_config", "INT32", (-1, 3), optional=True, allow_ragged_batch=True,
           supported=False),
)

# Guided decoding, with TensorRT-LLM's names: the ensemble passes them straight to the engine.
GUIDED_DECODING_INPUTS: tuple[Tensor, ...] = (
    Tensor("guided_decoding_guide_type", "STRING", (1,), optional=True,
           allow_ragged_batch=True),
    Tensor("guided_decoding_guide", "STRING", (1,), optional=True, allow_ragged_batch=True),
)

# Accepted and unused, as TensorRT-LLM's backend does for decoder-only models.
IGNORED_ENGINE_INPUTS: tuple[Tensor, ...] = (
    Tensor("decoder_input_ids", "INT32", (-1,), optional=True, allow_ragged_batch=True),
    _scalar("decoder_input_lengths", "INT32"),
)

# Inputs whose values we accept only in the range TensorRT-LLM's defaults cover.
# (beam search and multiple return sequences are not implemented by the CPU engine.)
SINGLE_VALUE_ONLY = {"beam_width": 1, "num_return_sequences": 1}
FALSE_ONLY = ("return_context_logits", "return_generation_logits")

# ``return_perf_metrics``: every response of the request carries all of these, as TensorRT-LLM's
# backend sends them (clients read each one as ``[0][0]`` in every streamed response).
PERF_OUTPUTS: tuple[tuple[str, str], ...] = (
    ("kv_cache_alloc_new_blocks", "INT32"),
    ("kv_cache_reused_blocks", "INT32"),
    ("kv_cache_alloc_total_blocks", "INT32"),
    ("arrival_time_ns", "INT64"),
    ("first_scheduled_time_ns", "INT64"),
    ("first_token_time_ns", "INT64"),
    ("last_token_time_ns", "INT64"),
    ("acceptance_rate", "FP32"),
    ("total_accepted_draft_tokens", "INT32"),
    ("total_draft_tokens", "INT32"),
)
# Our additive extension (``return_num_input_tokens`` / ``return_num_output_tokens``).
COUNT_OUTPUTS: tuple[str, ...] = ("num_input_tokens", "num_output_tokens")

# The CPU engine step's additive outputs for ``num_top_log_probs`` (see TENSORRT_LLM).
TOP_LOG_PROBS = "top_log_probs"
TOP_LOG_PROB_IDS = "top_log_prob_ids"
# The engine step's additive output that makes postprocessing stateless (see TENSORRT_LLM).
PRECEDING_IDS = "preceding_ids"
# The engine step's additive output that postprocessing acknowledges, so the step learns when
# the ensemble stopped forwarding a stream (see tritonllm.models.delivery).
DELIVERY_TICKET = "delivery_ticket"

# --- preprocessing -------------------------------------------------------------------------

PREPROCESSING = ModelContract(
    name="preprocessing",
    inputs=(
        Tensor("QUERY", "STRING", (1,)),
        Tensor("REQUEST_OUTPUT_LEN", "INT32", (1,)),
        Tensor("BAD_WORDS_DICT", "STRING", (-1,), optional=True),
        Tensor("STOP_WORDS_DICT", "STRING", (-1,), optional=True),
        Tensor("END_ID", "INT32", (1,), optional=True),
        Tensor("PAD_ID", "INT32", (1,), optional=True),
        Tensor("APPLY_CHAT_TEMPLATE", "BOOL", (1,), optional=True),
    ),
    outputs=(
        Tensor("INPUT_ID", "INT32", (-1,)),
        Tensor("REQUEST_INPUT_LEN", "INT32", (1,)),
        Tensor("REQUEST_OUTPUT_LEN", "INT32", (1,)),
        Tensor("BAD_WORDS_IDS", "INT32", (2, -1)),
        Tensor("STOP_WORDS_IDS", "INT32", (2, -1)),
        Tensor("OUT_END_ID", "INT32", (1,)),
        Tensor("OUT_PAD_ID", "INT32", (1,)),
        # Encoder-decoder outputs of the reference, for decoder-only models [pad_id] and 1:
        # clients that call the models one by one pass them on to ``tensorrt_llm``.
        Tensor("DECODER_INPUT_ID", "INT32", (-1,)),
        Tensor("REQUEST_DECODER_INPUT_LEN", "INT32", (1,)),
    ),
)

# --- the engine step: tensorrt_llm ---------------------------------------------------------

TENSORRT_LLM = ModelContract(
    name="tensorrt_llm",
    inputs=(
        Tensor("input_ids", "INT32", (-1,), allow_ragged_batch=True),
        Tensor("input_lengths", "INT32", (1,), reshape=()),
        Tensor("request_output_len", "INT32", (1,), reshape=()),
        _scalar("end_id", "INT32"),
        _scalar("pad_id", "INT32"),
        Tensor("stop_words_list", "INT32", (2, -1), optional=True, allow_ragged_batch=True),
        Tensor("bad_words_list", "INT32", (2, -1), optional=True, allow_ragged_batch=True),
        _scalar("stop", "BOOL"),
        *(_scalar(engine, dtype) for _, engine, dtype in SAMPLING_INPUTS),
        *IGNORED_ENGINE_INPUTS,
        Tensor("embedding_bias", "FP32", (-1,), optional=True, allow_ragged_batch=True),
        *GUIDED_DECODING_INPUTS,
        *UNSUPPORTED_ENGINE_INPUTS,
    ),
    outputs=(
        Tensor("output_ids", "INT32", (-1, -1)),
        Tensor("sequence_length", "INT32", (-1,)),
        # Our additive output (the CPU engine step's): per beam, the generated ids sent before
        # this streamed response's output_ids (at most 8; none for the first response or when
        # not streaming). Postprocessing decodes exact text deltas from it without state.
        Tensor(PRECEDING_IDS, "INT32", (-1, -1)),
        # Our additive output (the CPU engine step's): on each streamed response, (request key,
        # response number) for postprocessing to acknowledge.
        Tensor(DELIVERY_TICKET, "INT64", (2,)),
        Tensor("cum_log_probs", "FP32", (-1,)),
        Tensor("output_log_probs", "FP32", (-1, -1)),
        # Our additive outputs (the CPU engine step's), with ``num_top_log_probs`` > 0: per
        # beam and generated token, the k most likely ids and their log-probabilities.
        Tensor(TOP_LOG_PROB_IDS, "INT32", (-1, -1, -1)),
        Tensor(TOP_LOG_PROBS, "FP32", (-1, -1, -1)),
        Tensor("batch_index", "INT32", (1,)),
        Tensor("sequence_index", "INT32", (1,)),
        *(Tensor(name, dtype, (1,)) for name, dtype in PERF_OUTPUTS),
        *(Tensor(name, "INT32", (1,)) for name in COUNT_OUTPUTS),
    ),
)

# --- postprocessing ------------------------------------------------------------------------

POSTPROCESSING = ModelContract(
    name="postprocessing",
    inputs=(
        # Ragged: responses of different lengths share one execute (dynamic batching).
        Tensor("TOKENS_BATCH", "INT32", (-1, -1), allow_ragged_batch=True),
        Tensor("SEQUENCE_LENGTH", "INT32", (-1,)),
        Tensor("PRECEDING_IDS", "INT32", (-1, -1), optional=True, allow_ragged_batch=True),
        Tensor("DELIVERY_TICKET", "INT64", (2,), optional=True),
    ),
    outputs=(Tensor("OUTPUT", "STRING", (-1,)),),
)

# --- ensemble ------------------------------------------------------------------------------

_ENGINE_PASSTHROUGH_OUTPUTS = (
    "output_ids", "cum_log_probs", "output_log_probs", TOP_LOG_PROB_IDS, TOP_LOG_PROBS,
    "batch_index", "sequence_index",
    *(name for name, _ in PERF_OUTPUTS), *COUNT_OUTPUTS,
)

ENSEMBLE = ModelContract(
    name="ensemble",
    inputs=(
        Tensor("text_input", "STRING", (1,)),
        Tensor("max_tokens", "INT32", (1,)),
        Tensor("bad_words", "STRING", (-1,), optional=True),
        Tensor("stop_words", "STRING", (-1,), optional=True),
        _ensemble_scalar("end_id", "INT32"),
        _ensemble_scalar("pad_id", "INT32"),
        _ensemble_scalar("apply_chat_template", "BOOL"),
        *(_ensemble_scalar(name, dtype) for name, _, dtype in SAMPLING_INPUTS),
        *GUIDED_DECODING_INPUTS,
        *(Tensor(t.name, t.dtype, t.dims, optional=True, allow_ragged_batch=t.allow_ragged_batch,
                 supported=False) for t in UNSUPPORTED_ENGINE_INPUTS),
    ),
    outputs=(
        Tensor("text_output", "STRING", (-1,)),
        *(Tensor(t.name, t.dtype, t.dims) for t in TENSORRT_LLM.outputs
          if t.name in _ENGINE_PASSTHROUGH_OUTPUTS),
    ),
    steps=(
        Step(
            "preprocessing",
            input_map={
                "QUERY": "text_input",
                "REQUEST_OUTPUT_LEN": "max_tokens",
                "BAD_WORDS_DICT": "bad_words",
                "STOP_WORDS_DICT": "stop_words",
                "END_ID": "end_id",
                "PAD_ID": "pad_id",
                "APPLY_CHAT_TEMPLATE": "apply_chat_template",
            },
            output_map={
                "INPUT_ID": "_INPUT_ID",
                "REQUEST_INPUT_LEN": "_REQUEST_INPUT_LEN",
                "REQUEST_OUTPUT_LEN": "_REQUEST_OUTPUT_LEN",
                "BAD_WORDS_IDS": "_BAD_WORDS_IDS",
                "STOP_WORDS_IDS": "_STOP_WORDS_IDS",
                "OUT_END_ID": "_PREPROCESSOR_END_ID",
                "OUT_PAD_ID": "_PREPROCESSOR_PAD_ID",
            },
        ),
        Step(
            "tensorrt_llm",
            input_map={
                "input_ids": "_INPUT_ID",
                "input_lengths": "_REQUEST_INPUT_LEN",
                "request_output_len": "_REQUEST_OUTPUT_LEN",
                "end_id": "_PREPROCESSOR_END_ID",
                "pad_id": "_PREPROCESSOR_PAD_ID",
                "stop_words_list": "_STOP_WORDS_IDS",
                "bad_words_list": "_BAD_WORDS_IDS",
                **{engine: name for name, engine, _ in SAMPLING_INPUTS},
                **{t.name: t.name for t in GUIDED_DECODING_INPUTS + UNSUPPORTED_ENGINE_INPUTS},
            },
            output_map={
                "sequence_length": "_SEQUENCE_LENGTH",
                PRECEDING_IDS: "_PRECEDING_IDS",
                DELIVERY_TICKET: "_DELIVERY_TICKET",
                **{name: name for name in _ENGINE_PASSTHROUGH_OUTPUTS},
            },
        ),
        Step(
            "postprocessing",
            input_map={
                "TOKENS_BATCH": "output_ids",
                "SEQUENCE_LENGTH": "_SEQUENCE_LENGTH",
                "PRECEDING_IDS": "_PRECEDING_IDS",
                "DELIVERY_TICKET": "_DELIVERY_TICKET",
            },
            output_map={"OUTPUT": "text_output"},
        ),
    ),
)

# Request parameter (not a tensor): ask postprocessing for exact streamed text. Postprocessing
# cannot see the ``stream`` input (Triton refuses an ensemble step fed both by the decoupled
# engine and by ensemble inputs), so streaming clients send this with a unique request id.
INCREMENTAL_DETOKENIZE = "incremental_detokenize"

# How a full queue is worded: our engine's refusal (``tritonllm.engine.QueueFullError``) and
# Triton core's / TensorRT-LLM's. Triton 2.51's HTTP generate endpoint answers every model
# error with 400, so clients tell "retry later" from "fix the request" by these words.
BUSY_MARKS: tuple[str, ...] = ("server busy", "Exceeds maximum queue size",
                               "Maximum queue size of")


def is_busy_message(message: str) -> bool:
    return any(mark in message for mark in BUSY_MARKS)


# How the engine words a request ended by its own timeout (Triton's per-request ``timeout``).
TIMEOUT_MARK = "the request's timeout of"


MODELS: tuple[ModelContract, ...] = (PREPROCESSING, TENSORRT_LLM, POSTPROCESSING, ENSEMBLE)

MODEL_CONTRACTS = {m.name: m for m in MODELS}


def contract_of(model_name: str) -> ModelContract:
    """The contract of a model by name; any other name is taken to be an ensemble."""
    return MODEL_CONTRACTS.get(model_name, ENSEMBLE)


ENGINE_NAME_FOR = {name: engine for name, engine, _ in SAMPLING_INPUTS}
