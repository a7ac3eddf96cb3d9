"""The README's first requests run as written against a real server: every curl command and
every Python block of "A first request", with only the host:port swapped for the test server's,
answers as the README says (the default model knows Paris)."""

from __future__ import annotations

import contextlib
import io
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tritonllm.defaults import HTTP_PORT, OPENAI_PORT

README = Path(__file__).resolve().parents[1] / "README.md"
SECTION = "## A first request"


def quickstart() -> str:
    text = README.read_text()
    start = text.index(SECTION)
    end = text.index("\n## ", start + len(SECTION))
    return text[start:end]


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", quickstart(), re.S)


def curl_commands() -> list[str]:
    """Each ``curl`` command of the bash blocks, continuation lines joined."""
    commands = []
    for block in blocks("bash"):
        current: list[str] = []
        for line in block.splitlines():
            if line.startswith("curl "):
                current = [line]
                commands.append(current)
            elif current and line and not line.startswith(("#", ".venv")):
                current.append(line)
            else:
                current = []
    return ["\n".join(lines) for lines in commands]


def on_servers(text: str, triton_server, openai_frontend) -> str:
    openai = openai_frontend.url.split("://", 1)[1]
    return (text.replace(f"localhost:{HTTP_PORT}", triton_server.http_url)
            .replace(f"localhost:{OPENAI_PORT}", openai))


def test_the_quick_start_has_commands_to_check():
    assert len(curl_commands()) == 4
    assert len(blocks("python")) == 2


@pytest.mark.parametrize("index", range(4))
def test_each_curl_command_answers_as_shown(index, triton_server, openai_frontend):
    command = on_servers(curl_commands()[index], triton_server, openai_frontend)
    result = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "Paris" in result.stdout, result.stdout


def test_the_cli_lines_run(triton_server):
    line = next(l for b in blocks("bash") for l in b.splitlines()
                if l.startswith(".venv/bin/tritonllm generate"))
    argv = shlex.split(line)[1:] + ["--url", triton_server.http_url, "--max-tokens", "8"]
    result = subprocess.run([sys.executable, "-m", "tritonllm.cli", *argv], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip(), result.stderr


@pytest.mark.parametrize("index", range(2))
def test_each_python_block_runs(index, triton_server, openai_frontend):
    code = on_servers(blocks("python")[index], triton_server, openai_frontend)
    code = code.replace("Client()", f'Client(url="{triton_server.http_url}")')
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, f"README python block {index}", "exec"), {})
    assert out.getvalue().strip(), "the block printed nothing"
    if index == 1:  # the OpenAI SDK block prints the chat answer first
        assert "Paris" in out.getvalue()
