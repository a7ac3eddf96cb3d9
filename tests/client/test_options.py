"""GenerationOptions: the one map from option to ensemble input, and dtype checks."""

import dataclasses

import numpy as np
import pytest

from tritonllm.client import GenerationOptions
from tritonllm.client._options import TENSORS_OF_FIELD, input_array
from tritonllm.contract import ENSEMBLE


def test_every_field_maps_to_declared_ensemble_inputs():
    names = {f.name for f in dataclasses.fields(GenerationOptions)}
    assert names == set(TENSORS_OF_FIELD)
    declared = {t.name for t in ENSEMBLE.inputs}
    for tensors in TENSORS_OF_FIELD.values():
        assert set(tensors) <= declared


def test_defaults_send_only_max_tokens_and_the_flags():
    arrays = GenerationOptions().inputs()
    assert set(arrays) == {"max_tokens", "exclude_input_in_output", "return_log_probs",
                           "return_num_input_tokens", "return_num_output_tokens"}
    assert arrays["exclude_input_in_output"].tolist() == [[True]]


def test_arrays_take_the_contract_dtype_and_a_batch_dimension():
    options = GenerationOptions(max_tokens=7, temperature=0.5, top_k=3, top_p=0.9, seed=2**63,
                                min_tokens=1, repetition_penalty=1.1, stop=["a", "b c"])
    arrays = options.inputs()
    for name, array in arrays.items():
        spec = ENSEMBLE.input(name)
        assert array.dtype == np.dtype(spec.numpy_dtype), name
        assert array.shape[0] == 1, name
    assert arrays["seed"].item() == 2**63
    assert arrays["max_tokens"].shape == (1, 1)
    assert arrays["stop_words"].shape == (1, 2)
    assert arrays["stop_words"].tolist() == [[b"a", b"b c"]]


def test_a_single_stop_string_is_one_word_not_characters():
    assert GenerationOptions(stop="end").stop == ("end",)
    assert input_array("stop_words", ("end",)).tolist() == [[b"end"]]


@pytest.mark.parametrize("field, value, words", [
    ("max_tokens", 2**31, "max_tokens"),
    ("max_tokens", 1.5, "max_tokens: must be an integer"),
    ("max_tokens", True, "max_tokens: must be an integer"),
    ("seed", -1, "seed: -1 does not fit UINT64"),
    ("top_k", "3", "top_k: must be an integer"),
    ("temperature", float("nan"), "temperature: must be finite"),
    ("top_p", "0.5", "top_p: must be a number"),
    ("exclude_input_in_output", 1, "exclude_input_in_output: must be True or False"),
    ("stop", ["ok", 3], "stop: must be strings"),
])
def test_values_that_cannot_be_encoded_raise_naming_the_field(field, value, words):
    with pytest.raises(ValueError, match=words):
        GenerationOptions(**{field: value})


def test_range_limits_are_left_to_the_server():
    # The server knows its limits (max_seq_len ...) and names them; the client does not guess.
    options = GenerationOptions(max_tokens=0, top_p=2.0, temperature=-1.0)
    assert options.inputs()["max_tokens"].item() == 0


def test_options_are_frozen_and_keyword_only():
    with pytest.raises(dataclasses.FrozenInstanceError):
        GenerationOptions().max_tokens = 3
    with pytest.raises(TypeError):
        GenerationOptions(16)
