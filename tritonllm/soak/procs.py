"""The server's processes and their memory, read from Linux's ``/proc`` (no psutil).

The server is the process listening on Triton's HTTP port (found through ``/proc/net/tcp*``
and ``/proc/*/fd``) or a PID given; its memory is the sum of ``VmRSS`` over it and all its
descendants (``triton_python_backend_stub`` processes: the engine lives there).
"""

from __future__ import annotations

import os
from pathlib import Path

PROC = Path("/proc")
_LISTEN = "0A"


def listening_inodes(port: int) -> set[str]:
    """Socket inodes of TCP sockets listening on ``port`` (IPv4 and IPv6)."""
    inodes = set()
    for table in ("tcp", "tcp6"):
        path = PROC / "net" / table
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            cols = line.split()
            if int(cols[1].rsplit(":", 1)[1], 16) == port and cols[3] == _LISTEN:
                inodes.add(cols[9])
    return inodes


def pid_listening_on(port: int) -> int | None:
    """The PID of the (first) process holding a socket that listens on ``port``; None when
    none is visible (another user's process, or not on this machine)."""
    targets = {f"socket:[{inode}]" for inode in listening_inodes(port)}
    for pid in _pids():
        try:
            if any(os.readlink(fd) in targets for fd in (PROC / str(pid) / "fd").iterdir()):
                return pid
        except OSError:
            continue
    return None


def _pids() -> list[int]:
    return sorted(int(p.name) for p in PROC.iterdir() if p.name.isdigit())


def _ppid(pid: int) -> int | None:
    try:
        stat = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])


def tree(root: int) -> list[int]:
    """``root`` and every live descendant."""
    children: dict[int, list[int]] = {}
    for pid in _pids():
        children.setdefault(_ppid(pid), []).append(pid)
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def rss_bytes(pid: int) -> int:
    """``VmRSS`` of one process in bytes (0 when it is gone)."""
    try:
        for line in (PROC / str(pid) / "status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def tree_rss_bytes(root: int) -> int:
    """Summed RSS of ``root`` and its descendants, in bytes."""
    return sum(rss_bytes(pid) for pid in tree(root))
