"""Bind the plugin's unix socket so that it is never reachable at its path with a looser mode than asked.

A socket file takes its mode from the process umask at bind time; chmod-ing it afterwards leaves an
instant in which, under umask 000, anyone on the node may connect. Changing the umask around the bind
would narrow it, but the umask is process-wide and other threads create files meanwhile. So the socket
is bound inside a fresh 0700 directory next to its final path (only the owner can reach it there),
given its mode, and renamed into place: the rename is atomic and keeps the listening socket.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

from .protocol import MAX_SOCKET_PATH_BYTES

_UMASK_LOCK = threading.Lock()


def bind_private(path: Path, mode: int, bind: Callable[[Path], object]) -> None:
    """Call `bind(p)` to create a socket at some path `p`, and leave it at `path` with `mode`."""
    staging = Path(tempfile.mkdtemp(prefix=".", dir=path.parent))  # mkdtemp makes it 0700 whatever the umask
    inner = staging / "s"
    try:
        if len(os.fsencode(inner)) > MAX_SOCKET_PATH_BYTES:  # a directory near the limit: no room to stage
            _bind_under_umask(path, mode, bind)
            return
        bind(inner)
        os.chmod(inner, mode)
        os.replace(inner, path)
    finally:
        with contextlib.suppress(OSError):
            inner.unlink()
        with contextlib.suppress(OSError):
            staging.rmdir()


def _bind_under_umask(path: Path, mode: int, bind: Callable[[Path], object]) -> None:
    """Bind at `path` itself with a umask that leaves only `mode`'s bits; the lock keeps two binds in this
    process from restoring each other's umask. Other threads' files created meanwhile get at most `mode`'s
    bits, so hami-mig's own writers set their modes explicitly (fchmod) rather than trust the umask."""
    with _UMASK_LOCK:
        old = os.umask(0o777 & ~mode)
        try:
            bind(path)
        finally:
            os.umask(old)
    os.chmod(path, mode)
