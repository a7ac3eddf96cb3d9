"""The OpenAI-compatible frontend (tritonllm.openai) beside the server in a container.

The entrypoint runs it in front of the ``ensemble``, the CPU twin's or the ``tensorrtllm`` one,
on ``serving.openai_port`` (default 9000; 0: no frontend):

- settings from the profile (:func:`frontend_settings`): the port; ``serving.decoupled`` (when
  false each request asks the ensemble for one whole response); the model id clients send, the
  checkpoint directory's name as ``tritonllm serve`` names it; Triton's gRPC port on loopback.
  It binds all interfaces: in a container the pod network is the boundary, as for Triton's ports.
- lifetime (:func:`run_with_frontend`): started before the server (``/health`` answers 503
  until Triton and the ensemble are ready), stopped only after the server has exited, so
  requests in flight through it are relayed while Triton drains them. If the frontend exits on
  its own, the server is stopped too (the entrypoint signals itself; the signal is forwarded and
  the server drains) and the exit status is non-zero: the container restarts with both.
- multi-node: only the leader pod runs the entrypoint's serving path (worker pods run
  ``tritonllm deploy worker``; mpirun's ranks are tritonserver processes), so a group has one
  frontend, on the leader, where the Service sends clients.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from tritonllm.build.profile import BuildProfile, ServingSpec
from tritonllm.model_source import DEFAULT_MODEL_NAME
from tritonllm.serve.launcher import Ports

if TYPE_CHECKING:
    from tritonllm.openai.settings import FrontendSettings

CONTAINER_HOST = "0.0.0.0"
WATCH_INTERVAL_S = 0.5


def served_model_name(profile: BuildProfile | None) -> str:
    """The model id of ``/v1/models``: the checkpoint directory's name (SmolLM2's for
    ``model.dir: default`` or no profile)."""
    path = profile.model_path() if profile is not None else None
    return path.name if path is not None else DEFAULT_MODEL_NAME


def frontend_settings(profile: BuildProfile | None, ports: Ports,
                      decoupled: bool) -> FrontendSettings | None:
    """The FrontendSettings for this profile, or None when ``serving.openai_port`` is 0.
    ``decoupled``: the deployed ensemble's mode (the profile's ``serving.decoupled``)."""
    from tritonllm.openai.settings import FrontendSettings

    port = (profile.serving if profile is not None else ServingSpec()).openai_port
    if not port:
        return None
    defaults = FrontendSettings()
    max_tokens = defaults.default_max_tokens
    if profile is not None:  # room for new tokens that every admitted prompt has
        limits = profile.limits
        max_tokens = min(max_tokens, limits.max_seq_len - limits.max_input_len)
    return FrontendSettings(triton_url=f"127.0.0.1:{ports.grpc}", host=CONTAINER_HOST,
                            port=port, decoupled=decoupled,
                            model_name=served_model_name(profile),
                            default_max_tokens=max_tokens, tokenizer=_tokenizer(profile))


def _tokenizer(profile: BuildProfile | None) -> str:
    """The tokenizer directory, for the texts of tokens in ``logprobs`` (read when the first
    request asks for them: nothing is fetched here)."""
    from tritonllm.build import source
    from tritonllm.model_source import default_model_path

    if profile is None or profile.model_path() is None:  # model.dir: default
        return str(default_model_path())
    return str(source.tokenizer_dir(profile))


def describe(settings: FrontendSettings | None) -> str:
    """One line for the dry run: where it listens and the command that runs it."""
    import shlex

    from tritonllm.openai.server import command

    if settings is None:
        return "OpenAI frontend: none (serving.openai_port: 0)"
    return (f"OpenAI frontend :{settings.port} (model {settings.model_name!r}, decoupled "
            f"{str(settings.decoupled).lower()}): {shlex.join(command(settings))}")


def run_with_frontend(settings: FrontendSettings | None, argv: list[str], env: dict[str, str], kill_after_s: float,
                      log_file: Path | None = None) -> int:
    """Run the server ``argv`` under the signal-forwarding supervisor with the frontend beside
    it (none when ``settings`` is None); returns the server's exit status, or 1 when the server
    ended cleanly because the frontend died. Must be called from the main thread."""
    from tritonllm.deploy.supervise import run_forwarding_signals
    from tritonllm.openai.server import FrontendProcess

    if settings is None:
        return run_forwarding_signals(argv, env, kill_after_s)
    log = log_file.with_name(log_file.name + ".openai") if log_file else None
    frontend = FrontendProcess(settings, log_file=log, inherit_output=log is None,
                               new_session=True).start()
    _log(f"OpenAI frontend on :{settings.port} (model {settings.model_name!r})")
    watch = _Watch(frontend)
    try:
        code = run_forwarding_signals(argv, env, kill_after_s)
    finally:
        watch.stop()
        frontend.stop()
    return code or int(watch.frontend_died)


class _Watch:
    """A thread that stops the server (SIGTERM to this process, which the supervisor forwards)
    when the frontend exits before :meth:`stop`."""

    def __init__(self, frontend):
        self.frontend = frontend
        self.frontend_died = False
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="frontend-watch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stopped.wait(WATCH_INTERVAL_S):
            status = self.frontend.poll()
            if status is not None:
                self.frontend_died = True
                _log(f"the OpenAI frontend exited with status {status}: stopping the server")
                os.kill(os.getpid(), signal.SIGTERM)
                return

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join()


def _log(message: str) -> None:
    print(f"[tritonllm] {message}", file=sys.stderr, flush=True)
