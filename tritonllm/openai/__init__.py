"""An OpenAI-compatible API in front of the Triton ``ensemble``.

    python -m tritonllm.openai --triton-url localhost:8001 --port 9000
    # or: tritonllm serve   (starts Triton and this frontend on :9000)

Modules, one job each: :mod:`.protocol` (request bodies -> a validated call), :mod:`.generation`
(the call against the ensemble over gRPC streaming, with :mod:`tritonllm.client`),
:mod:`.stops` (stop strings), :mod:`.responses` (bodies and SSE chunks), :mod:`.errors`
(OpenAI's error shape), :mod:`.metrics` (Prometheus), :mod:`.app` (Starlette routes),
:mod:`.server` (uvicorn, the child process).
"""

from .app import create_app
from .errors import OpenAIError
from .server import FrontendProcess, run
from .settings import FrontendSettings

__all__ = ["FrontendProcess", "FrontendSettings", "OpenAIError", "create_app", "run"]
