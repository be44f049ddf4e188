"""Crash safety for Allocate: which instances a call is creating, on disk until the pod records them.

Written (atomically, 0600) before the first NVML step and removed once the pod's annotations name
the new instances, or once the undo ran. If the agent dies in between, the next reconcile finds
the entry and destroys exactly those instances if no pod records them and nothing runs on them:
no orphan survives a crash, and nothing else is ever touched.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

from hami_mig.mig.plan import Operation
from hami_mig.nvml import GpuDevice

log = logging.getLogger(__name__)
FILE_NAME = "allocate-journal.json"


class Journal:
    """One pending Allocate at most (the agent allocates under one lock). `directory=None`: disabled."""

    def __init__(self, directory: str | os.PathLike[str] | None) -> None:
        self.path: Path | None = None
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
        creates = [{"gpu_uuid": o.gpu_uuid, "gpu_index": o.gpu_index, "profile": o.profile, "start": o.start}
                   for o in operations if o.op == "create"]
        if self.path is None or not creates:
            return
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".journal-")
        try:
            with os.fdopen(fd, "w") as f:
                json.dump({"pod": pod, "creates": creates}, f)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def done(self) -> None:
        if self.path is not None:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()

    def pending(self) -> dict[str, Any] | None:
        if self.path is None:
            return None
        try:
            entry = json.loads(self.path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            log.error("unreadable allocate journal %s (%s): removing it; check for unrecorded instances by hand",
                      self.path, exc)
            self.done()
            return None
        return entry if isinstance(entry, dict) else None


def orphans(entry: dict[str, Any], devices: Sequence[GpuDevice], held: Collection[str]) -> list[Operation]:
    """Destroy operations for the journal's instances that exist, are recorded by no pod and run nothing."""
    ops: list[Operation] = []
    for create in entry.get("creates", []):
        dev = next((d for d in devices if d.uuid == create.get("gpu_uuid")), None)
        if dev is None:
            continue
        hw = dev.find(str(create.get("profile")), int(create.get("start", -1)))
        if hw is None or hw.busy or any(u in held for u in hw.uuids()):
            continue
        ops.append(Operation("destroy", dev.index, hw.profile, hw.start, dev.uuid))
    return ops
