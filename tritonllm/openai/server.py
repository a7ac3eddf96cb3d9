"""Run the frontend: in this process (:func:`run`, what ``python -m tritonllm.openai`` does),
or as a child process that ``tritonllm serve`` and the tests start and stop
(:class:`FrontendProcess`)."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import fields
from pathlib import Path

from tritonllm.contract import parse_bool
from tritonllm.process import die_with_parent

from .settings import FrontendSettings


class FrontendError(RuntimeError):
    """The frontend process could not be started or did not become ready."""


def run(settings: FrontendSettings) -> None:
    """Serve until SIGINT/SIGTERM (uvicorn finishes in-flight requests, then exits)."""
    import uvicorn

    from .app import create_app

    uvicorn.run(create_app(settings), host=settings.host, port=settings.port,
                log_level="warning", timeout_graceful_shutdown=5)


def add_options(parser: argparse.ArgumentParser) -> None:
    """One ``--option`` per :class:`FrontendSettings` field, defaults read from it."""
    defaults = FrontendSettings()
    for f in fields(FrontendSettings):
        default = getattr(defaults, f.name)
        kind = _optional_float if f.name == "request_timeout_s" else type(default)
        if kind is bool:
            kind = _bool
        parser.add_argument("--" + f.name.replace("_", "-"), dest=f.name, type=kind,
                            default=default, help=f"default {default}")


def settings_from_args(args) -> FrontendSettings:
    return FrontendSettings(**{f.name: getattr(args, f.name) for f in fields(FrontendSettings)})


def command(settings: FrontendSettings) -> list[str]:
    """The command line that runs ``settings`` in a child Python."""
    args = [sys.executable, "-m", "tritonllm.openai"]
    for f in fields(FrontendSettings):
        args += ["--" + f.name.replace("_", "-"), str(getattr(settings, f.name))]
    return args


def _bool(text: str) -> bool:
    return parse_bool(text, "option")


def _optional_float(text: str) -> float | None:
    return None if text.lower() == "none" else float(text)


class FrontendProcess:
    """The frontend as a child process; a context manager. ``start`` waits until it answers
    ``GET /v1/models``; ``stop`` sends SIGTERM and, after ``timeout_s``, SIGKILL. The child gets
    SIGTERM if the thread that started it dies (:func:`tritonllm.process.die_with_parent`).
    Its output goes to ``log_file``; without one it is discarded, unless ``inherit_output``
    (a container's entrypoint: the child writes to our stdout). ``new_session``: run it in its
    own session, so a terminal's Ctrl-C reaches only its parent, which decides when to stop it."""

    def __init__(self, settings: FrontendSettings, log_file: str | Path | None = None, *,
                 inherit_output: bool = False, new_session: bool = False):
        self.settings = settings
        self.log_file = Path(log_file) if log_file else None
        self.inherit_output = inherit_output
        self.new_session = new_session
        self._proc: subprocess.Popen | None = None
        self._log = None

    @property
    def url(self) -> str:
        return self.settings.url

    def start(self, timeout_s: float = 60.0) -> "FrontendProcess":
        self._log = open(self.log_file, "ab") if self.log_file else None
        inherit = None if self.inherit_output else subprocess.DEVNULL
        self._proc = subprocess.Popen(command(self.settings), stdout=self._log or inherit,
                                      stderr=subprocess.STDOUT, env=dict(os.environ),
                                      start_new_session=self.new_session,
                                      preexec_fn=die_with_parent(signal.SIGTERM))
        try:
            self._wait_ready(timeout_s)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise FrontendError(f"the OpenAI frontend exited with status "
                                    f"{self._proc.returncode}{self._hint()}")
            if _answers(f"{self.url}/v1/models"):
                return
            time.sleep(0.2)
        raise FrontendError(f"the OpenAI frontend did not answer within {timeout_s:.0f} s"
                            f"{self._hint()}")

    def poll(self) -> int | None:
        """The child's exit status once it has exited, else None (also before ``start``)."""
        proc = self._proc
        return None if proc is None else proc.poll()

    def stop(self, timeout_s: float = 10.0) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None
        if self._log:
            self._log.close()
            self._log = None

    def __enter__(self) -> "FrontendProcess":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _hint(self) -> str:
        return f"; see {self.log_file}" if self.log_file else ""


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status == 200 and "data" in json.loads(resp.read())
    except (urllib.error.URLError, OSError, ValueError):
        return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tritonllm.openai",
                                     description="OpenAI-compatible API over a Triton ensemble")
    add_options(parser)
    try:
        settings = settings_from_args(parser.parse_args(argv))
    except ValueError as exc:
        parser.error(str(exc))
    run(settings)
    return 0
