"""Is a TCP port free, and if not, which process holds it (Linux ``/proc``, own processes)?

Used before starting tritonserver so that a server left over from an earlier run is named
("port 8000 is held by pid 4242 (tritonserver ...)") instead of failing later in Triton's log.
"""

from __future__ import annotations

import socket

from tritonllm.serve.procfs import owner


class PortInUseError(RuntimeError):
    """A port the server needs is taken; the message names the port and, if found, the pid."""


def check_free(port: int, host: str = "127.0.0.1") -> None:
    """Raise :class:`PortInUseError` when something listens on ``port`` or it cannot be bound
    on ``host``."""
    if _listening(port) or not _bindable(host, port):
        raise PortInUseError(f"port {port} is already in use{_owner_hint(port)}; stop that "
                             "process or choose other ports (HTTP_PORT / GRPC_PORT / "
                             "METRICS_PORT / OPENAI_PORT, or --http-port ...)")


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
