"""Where the simulated state lives: in the process, or in a JSON file several processes share safely."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from hami_mig.testing.nvmlsim.state import SimState


class StateStore:
    """Transactions over the state: re-entrant in-process, flock'ed across processes, atomic on disk.

    The lock is a sibling `<file>.lock` (the data file itself is replaced by rename on every write,
    so locking it would lock a stale inode). Reads re-parse the file only when it changed.
    """

    def __init__(self, path: str | os.PathLike[str] | None, create: Callable[[], SimState],
                 check: Callable[[SimState], None] | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self._create = create
        self._check = check
        self._lock = threading.RLock()
        self._depth = 0
        self._lock_fd: int | None = None
        self._state: SimState | None = None if self.path else create()
        self._stamp: tuple[int, int, int] | None = None
        self._dirty = False
        if self.path is not None:
            with self.transaction():
                pass

    def mark_dirty(self) -> None:
        self._dirty = True

    @contextlib.contextmanager
    def transaction(self) -> Iterator[SimState]:
        with self._lock:
            outer = self._depth == 0
            if outer and self.path is not None:
                self._enter_file(self.path)
            self._depth += 1
            try:
                assert self._state is not None
                yield self._state
            finally:
                self._depth -= 1
                if outer and self.path is not None:
                    self._leave_file(self.path)

    def _enter_file(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock_fd = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        try:
            stamp = _stamp(path)
            if stamp is None or stamp[2] == 0:
                self._state = self._create()
                self._dirty = True
            elif stamp != self._stamp or self._state is None:
                self._state = SimState.from_json(json.loads(path.read_text(encoding="utf-8")))
                self._stamp = stamp
                if self._check is not None:
                    self._check(self._state)
        except BaseException:
            self._release()
            raise

    def _leave_file(self, path: Path) -> None:
        try:
            if self._dirty and self._state is not None:
                fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
                try:
                    with os.fdopen(fd, "w", encoding="utf-8") as f:  # no fsync: the rename is atomic for
                        f.write(json.dumps(self._state.to_json(), separators=(",", ":")))  # processes, which may
                        # crash; compact, so the C encoder writes it: the file is written on every change
                    os.replace(tmp, path)
                except BaseException:
                    with contextlib.suppress(OSError):
                        os.unlink(tmp)
                    raise
                self._stamp = _stamp(path)
        finally:
            self._dirty = False
            self._release()

    def _release(self) -> None:
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None


def _stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)
