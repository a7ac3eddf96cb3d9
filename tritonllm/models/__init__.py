"""The logic behind each model of the Triton model repository, free of Triton imports.

Each ``model_repository/<name>/1/model.py`` is a thin adapter: it converts Triton tensors to and
from plain numpy dicts and calls the class here. ``tritonllm.models.triton`` holds the few helpers
those adapters share; it receives ``triton_python_backend_utils`` as an argument, so nothing in the
package imports it.
"""
