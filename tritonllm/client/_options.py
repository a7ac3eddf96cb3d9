"""Generation options: one frozen dataclass, and the one map from option to ensemble input.

Each field becomes one (or two) of the ``ensemble`` inputs declared in :mod:`tritonllm.contract`,
with that input's dtype and shape; both protocols send the arrays built here.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, fields

import numpy as np

from tritonllm.contract import ENSEMBLE

# option field -> the ensemble input(s) it sets. The only place that knows this mapping.
TENSORS_OF_FIELD: dict[str, tuple[str, ...]] = {
    "max_tokens": ("max_tokens",),
    "temperature": ("temperature",),
    "top_k": ("top_k",),
    "top_p": ("top_p",),
    "seed": ("seed",),
    "stop": ("stop_words",),
    "bad_words": ("bad_words",),
    "min_tokens": ("min_tokens",),
    "repetition_penalty": ("repetition_penalty",),
    "presence_penalty": ("presence_penalty",),
    "frequency_penalty": ("frequency_penalty",),
    "length_penalty": ("length_penalty",),
    "end_id": ("end_id",),
    "pad_id": ("pad_id",),
    "exclude_input_in_output": ("exclude_input_in_output",),
    "return_log_probs": ("return_log_probs",),
    "num_top_log_probs": ("num_top_log_probs",),
    "guide_type": ("guided_decoding_guide_type",),
    "guide": ("guided_decoding_guide",),
    "return_num_tokens": ("return_num_input_tokens", "return_num_output_tokens"),
}

_INTEGER_RANGES = {"INT32": (-(2**31), 2**31 - 1), "UINT64": (0, 2**64 - 1)}


@dataclass(frozen=True, kw_only=True)
class GenerationOptions:
    """How to generate: sampling, stopping and what to return. Every field is keyword-only.

    None (or an empty tuple) means "not sent": the server's default applies (greedy decoding
    when no temperature/top_k/top_p is given).

    - ``max_tokens``: new tokens to generate at most (INT32 ``max_tokens``).
    - ``temperature``, ``top_p``, ``repetition_penalty``, ``presence_penalty``,
      ``frequency_penalty``, ``length_penalty``: FP32 inputs of the same names.
    - ``top_k``, ``min_tokens``, ``end_id``, ``pad_id``: INT32; ``seed``: UINT64.
    - ``stop`` / ``bad_words``: strings, sent as ``stop_words`` / ``bad_words`` (BYTES [1, n]).
    - ``exclude_input_in_output``: True by default here (the server's default is False, which
      returns prompt + completion, as TensorRT-LLM does).
    - ``return_log_probs``: ask for ``cum_log_probs`` and ``output_log_probs``.
    - ``num_top_log_probs``: per token, the k most likely tokens and their log-probabilities
      (our extension, CPU engine; ``top_log_prob_ids`` / ``top_log_probs``).
    - ``guide_type`` / ``guide``: guided decoding, TensorRT-LLM's ``guided_decoding_guide_type``
      (``json``, ``json_schema``, ``regex``, ``ebnf_grammar``) and ``guided_decoding_guide``.
    - ``return_num_tokens``: ask for ``num_input_tokens`` and ``num_output_tokens``.

    The client checks only that each value fits its tensor's dtype (ValueError naming the
    field). Limits that depend on the deployment (``max_tokens`` against ``max_seq_len``,
    ``top_p`` in (0, 1], ...) are the server's to check, once: its refusal arrives as
    :class:`InvalidRequestError` naming the field.
    """

    max_tokens: int = 64
    temperature: float | None = None
    top_k: int | None = None
    top_p: float | None = None
    seed: int | None = None
    stop: tuple[str, ...] = ()
    bad_words: tuple[str, ...] = ()
    min_tokens: int | None = None
    repetition_penalty: float | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    length_penalty: float | None = None
    end_id: int | None = None
    pad_id: int | None = None
    exclude_input_in_output: bool = True
    return_log_probs: bool = False
    num_top_log_probs: int | None = None
    guide_type: str | None = None
    guide: str | None = None
    return_num_tokens: bool = True

    def __post_init__(self) -> None:
        for name in ("stop", "bad_words"):
            object.__setattr__(self, name, _as_words(name, getattr(self, name)))
        for field in fields(self):
            value = getattr(self, field.name)
            if value is not None:
                dtype = ENSEMBLE.input(TENSORS_OF_FIELD[field.name][0]).dtype
                _check_fits(field.name, dtype, value)

    def inputs(self) -> dict[str, np.ndarray]:
        """The ensemble inputs these options set: name -> array with batch dim 1."""
        arrays = {}
        for field in fields(self):
            value = getattr(self, field.name)
            if value is None or value == ():
                continue
            for tensor in TENSORS_OF_FIELD[field.name]:
                arrays[tensor] = input_array(tensor, value)
        return arrays


def input_array(name: str, value) -> np.ndarray:
    """One ensemble input as the array Triton expects: shape [1, 1], or [1, n] for the
    variable-length word lists; STRING values become UTF-8 bytes in an object array."""
    spec = ENSEMBLE.input(name)
    values = list(value) if spec.dims == (-1,) else [value]
    if spec.dtype == "STRING":
        return np.array([[v.encode("utf-8") for v in values]], dtype=np.object_)
    return np.array([values], dtype=spec.numpy_dtype)


def _as_words(field: str, value) -> tuple[str, ...]:
    words = (value,) if isinstance(value, str) else tuple(value or ())
    for word in words:
        if not isinstance(word, str):
            raise ValueError(f"{field}: must be strings, got {word!r}")
    return words


def _check_fits(field: str, dtype: str, value) -> None:
    """ValueError naming ``field`` unless ``value`` can be sent as ``dtype``."""
    if dtype == "STRING" and field not in ("stop", "bad_words") and not isinstance(value, str):
        raise ValueError(f"{field}: must be a string, got {value!r}")
    if dtype == "BOOL" and not isinstance(value, bool):
        raise ValueError(f"{field}: must be True or False, got {value!r}")
    if dtype in _INTEGER_RANGES:
        _check_integer(field, dtype, value)
    if dtype == "FP32":
        _check_real(field, value)


def _check_integer(field: str, dtype: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{field}: must be an integer, got {value!r}")
    low, high = _INTEGER_RANGES[dtype]
    if not low <= value <= high:
        raise ValueError(f"{field}: {value} does not fit {dtype} [{low}, {high}]")


def _check_real(field: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{field}: must be a number, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{field}: must be finite, got {value!r}")
