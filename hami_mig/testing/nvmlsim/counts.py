"""NVML call counts and time per call name, readable by other processes while the simulator runs.

With a state file, each process that drives the simulator keeps its own counters in
`<state file>.calls/<pid>.bin` (a shared memory map: counting costs no system call), and any process
reads every file and adds them up: a benchmark or test can count what an agent subprocess asked NVML.
"""

from __future__ import annotations

import contextlib
import json
import mmap
import os
import struct
import threading
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from hami_mig.testing.nvmlsim.faults import matches

_MAGIC = b"HMSIMCALLS1\n"
_SLOT = struct.Struct("<QQ")  # calls, nanoseconds inside the call (latency included)


def calls_dir(state_file: str | os.PathLike[str]) -> Path:
    return Path(f"{state_file}.calls")


@dataclass(frozen=True)
class CallStats:
    """Calls and time per NVML function; subtract two readings to get what happened in between."""

    counts: Mapping[str, int] = field(default_factory=dict)
    nanoseconds: Mapping[str, int] = field(default_factory=dict)

    def total(self, kind: str | None = None) -> int:
        """All calls, or those of a kind (`mutating`, `create`, `destroy`, `query` ... see faults.KINDS)."""
        return sum(n for name, n in self.counts.items() if kind is None or matches(kind, name))

    def seconds(self, kind: str | None = None) -> float:
        return sum(ns for name, ns in self.nanoseconds.items() if kind is None or matches(kind, name)) / 1e9

    def __sub__(self, before: CallStats) -> CallStats:
        counts = Counter(self.counts)
        counts.subtract(before.counts)
        ns = Counter(self.nanoseconds)
        ns.subtract(before.nanoseconds)
        return CallStats({k: v for k, v in counts.items() if v}, {k: v for k, v in ns.items() if v})


class SharedCounter:
    """This process' counters, in a file other processes can read at any time."""

    def __init__(self, state_file: str | os.PathLike[str], names: Iterable[str]) -> None:
        self._names = sorted(set(names))
        self._slot = {name: i for i, name in enumerate(self._names)}
        self._lock = threading.Lock()
        self._pid = -1
        self._map: mmap.mmap | None = None
        self._base = 0
        self._dir = calls_dir(state_file)

    def _open(self) -> mmap.mmap:
        """Create this process' file (again after a fork: the child counts on its own)."""
        header = json.dumps(self._names).encode()
        base = len(_MAGIC) + 4 + len(header)
        base += -base % 8
        self._dir.mkdir(parents=True, exist_ok=True)
        path = self._dir / f"{os.getpid()}.bin"
        with open(path, "wb") as f:
            f.write(_MAGIC + struct.pack("<I", len(header)) + header)
            f.write(b"\0" * (base - f.tell() + _SLOT.size * len(self._names)))
        with open(path, "r+b") as f:
            self._map = mmap.mmap(f.fileno(), 0)
        self._base = base
        self._pid = os.getpid()
        return self._map

    def add(self, name: str, nanoseconds: int) -> None:
        slot = self._slot.get(name)
        if slot is None:
            return
        with self._lock:
            view = self._map if self._pid == os.getpid() and self._map is not None else self._open()
            offset = self._base + slot * _SLOT.size
            calls, ns = _SLOT.unpack_from(view, offset)
            _SLOT.pack_into(view, offset, calls + 1, ns + nanoseconds)


def read_call_stats(state_file: str | os.PathLike[str]) -> CallStats:
    """Every process' counters for this state file, added up (empty when nothing was counted yet)."""
    counts: Counter[str] = Counter()
    ns: Counter[str] = Counter()
    directory = calls_dir(state_file)
    for path in sorted(directory.glob("*.bin")) if directory.is_dir() else ():
        with contextlib.suppress(OSError, ValueError, struct.error):
            data = path.read_bytes()
            if not data.startswith(_MAGIC):
                continue
            (length,) = struct.unpack_from("<I", data, len(_MAGIC))
            start = len(_MAGIC) + 4
            names = json.loads(data[start:start + length])
            base = start + length
            base += -base % 8
            for i, name in enumerate(names):
                calls, spent = _SLOT.unpack_from(data, base + i * _SLOT.size)
                counts[name] += calls
                ns[name] += spent
    return CallStats({k: v for k, v in counts.items() if v}, {k: v for k, v in ns.items() if v})
