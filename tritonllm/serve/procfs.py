"""Processes as Linux's ``/proc`` shows them (no psutil): who listens on a port, a process's
live descendants and command line, its resident memory. One reader for the launcher's stale-port
check, the crash watchdog, the soak's memory readings and the tests. Processes of other users,
or that vanish while being read, are skipped rather than failing the caller."""

from __future__ import annotations

import os
from pathlib import Path

PROC = Path("/proc")
TCP_LISTEN = "0A"  # the ``st`` column of /proc/net/tcp*


def listening_inodes(port: int) -> set[str]:
    """Socket inodes of TCP sockets listening on ``port`` (IPv4 and IPv6)."""
    inodes = set()
    for table in ("tcp", "tcp6"):
        try:
            lines = (PROC / "net" / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == TCP_LISTEN and int(local.rsplit(":", 1)[1], 16) == port:
                inodes.add(inode)
    return inodes


def owner(port: int) -> tuple[int, str] | None:
    """``(pid, command line)`` of a process listening on ``port``; None when none is visible."""
    sockets = {f"socket:[{inode}]" for inode in listening_inodes(port)}
    if not sockets:
        return None
    for pid in _pids():
        if _holds_any(pid, sockets):
            return pid, " ".join(argv(pid)) or "?"
    return None


def state_and_parent(pid: int) -> tuple[str, int] | None:
    """``(state, ppid)`` from /proc/<pid>/stat (state ``Z``: a zombie); None when gone."""
    try:
        fields = (PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[0], int(fields[1])


def argv(pid: int) -> list[str]:
    """The process's arguments (empty when gone or unreadable)."""
    try:
        raw = (PROC / str(pid) / "cmdline").read_bytes()
    except OSError:
        return []
    return [arg.decode(errors="replace") for arg in raw.split(b"\0") if arg]


def descendants(root: int) -> dict[int, list[str]]:
    """Every living (not zombie) descendant of ``root``: pid -> argv."""
    children: dict[int, list[int]] = {}
    for pid in _pids():
        stat = state_and_parent(pid)
        if stat is not None and stat[0] != "Z":
            children.setdefault(stat[1], []).append(pid)
    found, todo = {}, [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found[child] = argv(child)
            todo.append(child)
    return found


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used, in seconds (0 when it is gone)."""
    try:
        fields = (PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_bytes(pid: int) -> int:
    """``VmRSS`` of one process in bytes (0 when it is gone)."""
    try:
        for line in (PROC / str(pid) / "status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _pids() -> list[int]:
    return sorted(int(p.name) for p in PROC.iterdir() if p.name.isdigit())


def _holds_any(pid: int, sockets: set[str]) -> bool:
    try:
        return any(os.readlink(fd.path) in sockets for fd in os.scandir(PROC / str(pid) / "fd"))
    except OSError:
        return False
