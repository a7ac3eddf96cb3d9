"""Fixtures for the OpenAI frontend's live tests: the frontend as a child process (as
``tritonllm serve`` starts it) in front of the session's real tritonserver, the official
``openai`` SDK pointed at it, and transformers' own model for the expected answers."""

from __future__ import annotations

import pytest

from tritonllm.openai import FrontendProcess, FrontendSettings
from tritonllm.serve.launcher import free_port
from tritonllm.tokenizer import TextCodec


@pytest.fixture(scope="session")
def openai_frontend(triton_server, tmp_path_factory) -> FrontendProcess:
    settings = FrontendSettings(triton_url=triton_server.grpc_url,
                                model_name=triton_server.model_dir.name,
                                host="127.0.0.1", port=free_port(), default_max_tokens=32)
    log = tmp_path_factory.mktemp("openai") / "frontend.log"
    with FrontendProcess(settings, log_file=log) as frontend:
        yield frontend


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
