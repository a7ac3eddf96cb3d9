"""The server's processes and their memory: the server is the process listening on Triton's
HTTP port (or a PID given); its memory is the sum of ``VmRSS`` over it and all its live
descendants (``triton_python_backend_stub`` processes: the engine lives there). Read through
:mod:`tritonllm.serve.procfs`."""

from __future__ import annotations

from tritonllm.serve.procfs import PROC, descendants, owner, rss_bytes

__all__ = ["PROC", "pid_listening_on", "rss_bytes", "tree", "tree_rss_bytes"]


def pid_listening_on(port: int) -> int | None:
    """The PID of a process listening on ``port``; None when none is visible (another user's
    process, or not on this machine)."""
    found = owner(port)
    return None if found is None else found[0]


def tree(root: int) -> list[int]:
    """``root`` and every live descendant."""
    return [root, *descendants(root)]


def tree_rss_bytes(root: int) -> int:
    """Summed RSS of ``root`` and its descendants, in bytes."""
    return sum(rss_bytes(pid) for pid in tree(root))
