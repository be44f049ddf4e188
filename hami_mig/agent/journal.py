"""Crash safety for Allocate: which instances a call is creating, on disk until the pod records them.

The journal is a list of entries, one per Allocate whose instances are not yet accounted for. An
entry is written (atomically, fsync'ed, 0600) before the first NVML step and removed once the pod's
annotations name the new instances, or once the undo ran. If the agent dies in between, or the undo
fails, the entry stays; reconcile (`agent/recovery.py`) destroys exactly those instances once no pod
records them and nothing runs on them, and only then drops the entry. Entries of earlier, unfinished
recoveries survive later Allocates: nothing is forgotten until its step is done.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hami_mig.mig.plan import Operation

log = logging.getLogger(__name__)
FILE_NAME = "allocate-journal.json"
VERSION = 2


@dataclass(frozen=True)
class Create:
    """One instance an Allocate set out to create: where (GPU, profile, placement)."""

    gpu_uuid: str
    gpu_index: int
    profile: str
    start: int

    def to_json(self) -> dict[str, Any]:
        return {"gpu_uuid": self.gpu_uuid, "gpu_index": self.gpu_index, "profile": self.profile,
                "start": self.start}

    @classmethod
    def from_json(cls, raw: Any) -> Create:
        if not isinstance(raw, dict):
            raise ValueError(f"a create must be an object, not {raw!r}")
        return cls(str(raw["gpu_uuid"]), int(raw["gpu_index"]), str(raw["profile"]), int(raw["start"]))

    def label(self) -> str:
        return f"{self.profile}@{self.start} on GPU {self.gpu_index}"


@dataclass(frozen=True)
class Entry:
    """The unfinished creates of one Allocate, with the pod it was for."""

    id: str
    pod: str
    creates: tuple[Create, ...]

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "pod": self.pod, "creates": [c.to_json() for c in self.creates]}

    @classmethod
    def from_json(cls, raw: Any, fallback_id: str) -> Entry:
        if not isinstance(raw, dict) or not isinstance(raw.get("creates", []), list):
            raise ValueError(f"an entry must be an object with a list of creates, not {raw!r}")
        return cls(str(raw.get("id") or fallback_id), str(raw.get("pod", "")),
                   tuple(Create.from_json(c) for c in raw.get("creates", [])))


def decode(text: str) -> list[Entry]:
    """The entries of a journal file: this format (`{"version": 2, "entries": [...]}`) or the single entry
    (`{"pod": ..., "creates": [...]}`) that agents before it wrote, read as a list of one on upgrade."""
    doc = json.loads(text)
    if not isinstance(doc, dict):
        raise ValueError("the journal must be a JSON object")
    if "entries" not in doc:
        return [Entry.from_json(doc, "legacy")] if doc.get("creates") else []
    if not isinstance(doc["entries"], list):
        raise ValueError("entries must be a list")
    return [Entry.from_json(e, f"entry-{n}") for n, e in enumerate(doc["entries"])]


def encode(entries: Sequence[Entry]) -> str:
    return json.dumps({"version": VERSION, "entries": [e.to_json() for e in entries]}, separators=(",", ":"))


class Journal:
    """Every unfinished Allocate's creates; `begin`/`done` bracket the current one (the agent allocates under
    one lock, so there is at most one current entry). `directory=None`: disabled."""

    def __init__(self, directory: str | os.PathLike[str] | None) -> None:
        self.path: Path | None = None
        self._current: str | None = None
        if directory is None:
            return
        try:
            Path(directory).mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            log.warning("state directory %s is not usable (%s): crash recovery of half-done allocations is off",
                        directory, exc.strerror or exc)
            return
        self.path = Path(directory) / FILE_NAME

    def begin(self, pod: str, operations: Sequence[Operation]) -> None:
        """Add an entry for the creates among `operations` (before any of them runs); OSError if not written."""
        self._current = None
        creates = tuple(Create(o.gpu_uuid, o.gpu_index, o.profile, o.start) for o in operations if o.op == "create")
        if self.path is None or not creates:
            return
        entry = Entry(uuid.uuid4().hex[:12], pod, creates)
        self._write([*self.pending(), entry], durable=True)
        self._current = entry.id

    def done(self) -> None:
        """The current Allocate's instances are recorded by its pod, or undone: drop its entry."""
        if self._current is not None:
            self.resolve(self._current)
            self._current = None

    def resolve(self, entry_id: str, left: Sequence[Create] = ()) -> None:
        """Drop an entry once its creates are accounted for, or keep only the creates `left` unfinished."""
        if self.path is None:
            return
        entries = self.pending()
        kept = [e if e.id != entry_id else Entry(e.id, e.pod, tuple(left)) for e in entries]
        kept = [e for e in kept if e.creates]
        if kept == entries:
            return
        try:
            self._write(kept)
        except OSError as exc:  # the entry stays: recovery finds its instances recorded or gone and drops it
            log.error("could not update the allocate journal %s: %s", self.path, exc)

    def pending(self) -> list[Entry]:
        """Every unfinished entry, oldest first (an unreadable file is set aside and reads as empty)."""
        if self.path is None:
            return []
        try:
            return decode(self.path.read_text())
        except FileNotFoundError:
            return []
        except (OSError, ValueError, KeyError, TypeError) as exc:
            aside = self.path.with_name(self.path.name + ".unreadable")
            log.error("unreadable allocate journal %s (%s): moved to %s; instances it named may be left as free "
                      "instances", self.path, exc, aside)
            with contextlib.suppress(OSError):
                os.replace(self.path, aside)
            return []

    def _write(self, entries: Sequence[Entry], durable: bool = False) -> None:
        """Replace the file atomically (temp file, fsync, rename); none left: remove it. `durable` also fsyncs
        the directory, so the new list survives a power cut: needed before NVML steps run. A removal that a
        power cut undoes only brings back an entry whose instances are recorded or gone, which recovery drops."""
        assert self.path is not None
        directory = self.path.parent
        if not entries:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
            return
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".journal-")  # created 0600
        try:
            with os.fdopen(fd, "w") as f:
                f.write(encode(entries))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        if durable:
            _fsync_dir(directory)


def _fsync_dir(directory: Path) -> None:
    """Make a rename or unlink in `directory` durable (a power cut must not bring an old journal back)."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

