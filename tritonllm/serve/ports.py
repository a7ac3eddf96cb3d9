"""Is a TCP port free, and if not, which process holds it (Linux ``/proc``, own processes)?

Used before starting tritonserver so that a server left over from an earlier run is named
("port 8000 is held by pid 4242 (tritonserver ...)") instead of failing later in Triton's log.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

LISTEN = "0A"  # TCP_LISTEN in /proc/net/tcp's ``st`` column


class PortInUseError(RuntimeError):
    """A port the server needs is taken; the message names the port and, if found, the pid."""


def check_free(port: int, host: str = "127.0.0.1") -> None:
    """Raise :class:`PortInUseError` when something listens on ``port`` or it cannot be bound
    on ``host``."""
    if _listening(port) or not _bindable(host, port):
        raise PortInUseError(f"port {port} is already in use{_owner_hint(port)}; stop that "
                             "process or choose other ports (HTTP_PORT / GRPC_PORT / "
                             "METRICS_PORT / OPENAI_PORT, or --http-port ...)")


def owner(port: int) -> tuple[int, str] | None:
    """``(pid, command line)`` of a process listening on ``port``, when ``/proc`` shows it
    (processes of other users are not readable); else None."""
    inodes = _listening_inodes(port)
    if not inodes:
        return None
    for pid_dir in Path("/proc").iterdir():
        if pid_dir.name.isdigit() and _holds_any(pid_dir, inodes):
            return int(pid_dir.name), _cmdline(pid_dir)
    return None


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1.0)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _bindable(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _owner_hint(port: int) -> str:
    found = owner(port)
    if found is None:
        return ""
    pid, cmd = found
    return f" by pid {pid} ({cmd[:120]}); a server left over from an earlier run? kill {pid}"


def _listening_inodes(port: int) -> set[str]:
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == LISTEN and int(local.rsplit(":", 1)[1], 16) == port:
                inodes.add(inode)
    return inodes


def _holds_any(pid_dir: Path, inodes: set[str]) -> bool:
    try:
        for fd in os.scandir(pid_dir / "fd"):
            link = os.readlink(fd.path)
            if link.startswith("socket:[") and link[8:-1] in inodes:
                return True
    except OSError:
        pass
    return False


def _cmdline(pid_dir: Path) -> str:
    try:
        return (pid_dir / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return "?"
