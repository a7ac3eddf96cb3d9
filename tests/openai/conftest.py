"""Fixtures for the OpenAI frontend's live tests: the official ``openai`` SDK pointed at the
session's frontend (``openai_frontend`` in tests/conftest.py)."""

from __future__ import annotations

import pytest

from tritonllm.tokenizer import TextCodec


@pytest.fixture(scope="session")
def served_model(openai_frontend) -> str:
    return openai_frontend.settings.model_name


@pytest.fixture(scope="session")
def sdk(openai_frontend):
    import openai

    with openai.OpenAI(base_url=f"{openai_frontend.url}/v1", api_key="unused",
                       max_retries=0, timeout=300) as client:
        yield client


def chat_ids(codec: TextCodec, messages: list[dict]) -> list[int]:
    """The chat-templated prompt exactly as transformers renders it."""
    return list(codec.tokenizer.apply_chat_template(messages, add_generation_prompt=True,
                                                    tokenize=True, return_dict=False))
