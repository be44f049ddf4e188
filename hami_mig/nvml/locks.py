"""One lock per GPU, so two plans never interleave on a GPU while plans on different GPUs run in parallel."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager


class GpuLocks:
    """Locks keyed by GPU UUID, created on first use; several are always taken in sorted order (no deadlock)."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}

    def lock(self, key: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(key, threading.Lock())

    @contextmanager
    def hold(self, keys: Iterable[str]) -> Iterator[None]:
        taken: list[threading.Lock] = []
        try:
            for key in sorted(set(keys)):
                lock = self.lock(key)
                lock.acquire()
                taken.append(lock)
            yield
        finally:
            for lock in reversed(taken):
                lock.release()
