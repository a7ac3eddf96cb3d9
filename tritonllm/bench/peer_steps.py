"""What every peer of :mod:`tritonllm.bench.peers` is built from: the install/prepare
:class:`Step`, the virtualenv and pip command lines, the model id the peers answer to, and the
key that tells one checkpoint's converted files from another's. Pure but for :func:`all_done`,
which looks for files."""

from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass
from pathlib import Path

SERVED_MODEL = "peer"  # the model id the peers answer to


@dataclass(frozen=True)
class Step:
    """One install step: ``argv`` run in ``cwd``; skipped when ``done`` exists. ``marker``: the
    runner creates ``done`` itself after success (for steps that leave no file of their own).
    ``atomic``: the command writes :attr:`partial` and the runner renames it to ``done`` after
    success, so an interrupted step never looks done."""

    description: str
    argv: tuple[str, ...]
    cwd: Path
    done: Path
    marker: bool = False
    atomic: bool = False

    @property
    def partial(self) -> Path:
        return self.done.with_name(self.done.name + ".part")


def all_done(steps: list[Step]) -> bool:
    """Whether every step has left its ``done`` file (a peer is installed when its install
    steps all have)."""
    return all(step.done.exists() for step in steps)


def venv_step(venv: Path) -> Step:
    return Step(f"create the virtualenv {venv}", (sys.executable, "-m", "venv", str(venv)),
                venv.parent, venv / "bin" / "python")


def pip(venv: Path, *args: str) -> tuple[str, ...]:
    return (str(venv / "bin" / "python"), "-m", "pip", *args)


def checkpoint_key(model_dir: Path) -> str:
    """The checkpoint dir's name and a short hash of its resolved path: converted files of two
    checkpoints that share a name never collide."""
    resolved = str(Path(model_dir).resolve())
    return f"{Path(model_dir).name}-{hashlib.sha256(resolved.encode()).hexdigest()[:10]}"
