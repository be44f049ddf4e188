"""Keep the C heap from creeping up over the short-lived bursts each Allocate makes.

Each Allocate lists the node's pods and turns them into model objects, then frees them; glibc keeps
freed pages, fragmented, in one heap per thread that ever allocated. The agent uses one heap for all
its threads (`one_arena`, set before they start) and hands free pages back after each burst
(a garbage collection, then `malloc_trim(0)`, at most once a second). glibc only; elsewhere both do nothing.
"""

from __future__ import annotations

import ctypes
import gc
import threading
import time
from collections.abc import Callable

M_ARENA_MAX = -8  # glibc's mallopt parameter


def _libc_function(name: str) -> Callable[..., int] | None:
    try:
        found: Callable[..., int] = getattr(ctypes.CDLL(None), name)  # the process' own C library
    except (OSError, AttributeError):  # not glibc (musl, macOS)
        return None
    return found


def one_arena() -> bool:
    """One malloc arena for every thread (call before starting threads); True when glibc took it."""
    mallopt = _libc_function("mallopt")
    return bool(mallopt is not None and mallopt(M_ARENA_MAX, 1))


class HeapTrimmer:
    """Calls malloc_trim at most once per `min_interval_s`; thread-safe and cheap to call often."""

    def __init__(self, min_interval_s: float = 1.0) -> None:
        self._trim = _libc_function("malloc_trim")
        self._min_interval_s = min_interval_s
        self._last = -min_interval_s
        self._lock = threading.Lock()

    @property
    def available(self) -> bool:
        return self._trim is not None

    def __call__(self, force: bool = False) -> bool:
        """Collect cyclic garbage, then trim; True when the heap was trimmed now."""
        if self._trim is None:
            return False
        now = time.monotonic()
        with self._lock:
            if not force and now - self._last < self._min_interval_s:
                return False
            self._last = now
        gc.collect()  # cheap after gc.freeze(): only what the agent made since start-up is walked
        self._trim(0)
        return True


trim_heap = HeapTrimmer()
