"""`hami.io/mutex.lock`: one pod at a time between the scheduler's bind and the node agent's Allocate."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from hami_mig.errors import InputError
from hami_mig.kube.annotations import NODE_LOCK

LOCK_TIMEOUT = timedelta(minutes=5)
"""HAMi's NodeLockTimeout: an older lock is stale and may be taken over or released."""

_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")


@dataclass(frozen=True)
class NodeLock:
    """`<RFC3339>,<namespace>,<pod>`; a bare timestamp (older HAMi) decodes with empty namespace and pod."""

    locked_at: datetime
    namespace: str = ""
    pod: str = ""

    def __post_init__(self) -> None:
        if self.locked_at.tzinfo is None or self.locked_at.utcoffset() is None:
            raise InputError(f"{NODE_LOCK} time", self.locked_at, "a timezone-aware time (RFC3339 carries an offset)")
        if self.locked_at.microsecond:
            raise InputError(f"{NODE_LOCK} time", self.locked_at, "whole seconds (Go's time.RFC3339 has none)")
        for name, value in (("namespace", self.namespace), ("pod", self.pod)):
            if not isinstance(value, str) or "," in value or value != value.strip():
                raise InputError(f"{NODE_LOCK} {name}", value, "a Kubernetes name without commas or spaces")
        if bool(self.namespace) != bool(self.pod):
            raise InputError(NODE_LOCK, (self.namespace, self.pod), "namespace and pod are given together or not")

    def encode(self) -> str:
        offset = self.locked_at.utcoffset() or timedelta(0)
        stamp = self.locked_at.strftime("%Y-%m-%dT%H:%M:%S")
        if offset == timedelta(0):
            stamp += "Z"
        else:
            sign = "-" if offset < timedelta(0) else "+"
            minutes = abs(int(offset.total_seconds())) // 60
            stamp += f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"
        return f"{stamp},{self.namespace},{self.pod}" if self.pod else stamp

    def expired(self, now: datetime | None = None, timeout: timedelta = LOCK_TIMEOUT) -> bool:
        current = now if now is not None else datetime.now(UTC)
        return current - self.locked_at > timeout

    def held_by(self, namespace: str, pod: str) -> bool:
        return self.namespace == namespace and self.pod == pod

    @classmethod
    def decode(cls, text: str) -> NodeLock:
        parts = [part.strip() for part in text.strip().split(",")]
        if len(parts) not in (1, 3) or not _RFC3339.match(parts[0]):
            raise InputError(NODE_LOCK, text, "<RFC3339 time>,<namespace>,<pod>, e.g. 2024-05-01T10:00:00Z,ns,pod")
        try:
            locked_at = datetime.fromisoformat(parts[0].upper().replace("Z", "+00:00"))
        except ValueError:
            raise InputError(NODE_LOCK, text, "a valid RFC3339 time first") from None
        namespace, pod = (parts[1], parts[2]) if len(parts) == 3 else ("", "")
        if len(parts) == 3 and not (namespace and pod):
            raise InputError(NODE_LOCK, text, "a non-empty namespace and pod after the time")
        return cls(locked_at.replace(microsecond=0), namespace, pod)

    @classmethod
    def now(cls, namespace: str, pod: str, at: datetime | None = None) -> NodeLock:
        moment = at if at is not None else datetime.now(UTC)
        return cls(moment.replace(microsecond=0), namespace, pod)
