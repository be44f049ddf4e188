"""`hami.io/node-handshake`: the scheduler's "are you alive" (Requesting_/Deleted_) and the agent's "Reported"."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from hami_mig.errors import InputError
from hami_mig.kube.annotations import NODE_HANDSHAKE

_DATETIME = "%Y-%m-%d %H:%M:%S"  # Go's time.DateTime, local time without a zone
_LEADING_TIME = re.compile(r"^(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2})")


class HandshakeState(StrEnum):
    REQUESTING = "Requesting"  # scheduler: "Requesting_<time>"
    DELETED = "Deleted"  # scheduler: "Deleted_<time>", the node stopped answering
    REPORTED = "Reported"  # device plugin: "Reported <Go time.String()>"


@dataclass(frozen=True)
class Handshake:
    """One handshake value; `at` is naive (HAMi writes local time), None when a Reported time is unreadable."""

    state: HandshakeState
    at: datetime | None

    def __post_init__(self) -> None:
        if self.at is not None and (self.at.tzinfo is not None or self.at.microsecond):
            raise InputError(f"{NODE_HANDSHAKE} time", self.at, "a naive time in whole seconds")
        if self.at is None and self.state is not HandshakeState.REPORTED:
            raise InputError(f"{NODE_HANDSHAKE} time", None, f"{self.state.value} needs a time")

    def encode(self) -> str:
        stamp = self.at.strftime(_DATETIME) if self.at is not None else ""
        if self.state is HandshakeState.REPORTED:
            return f"Reported {stamp}".rstrip()
        return f"{self.state.value}_{stamp}"

    @classmethod
    def decode(cls, text: str) -> Handshake:
        value = text.strip()
        for state in (HandshakeState.REQUESTING, HandshakeState.DELETED):
            if value.startswith(state.value + "_"):
                try:
                    return cls(state, datetime.strptime(value[len(state.value) + 1 :], _DATETIME))
                except ValueError:
                    raise InputError(NODE_HANDSHAKE, text, f"{state.value}_YYYY-MM-DD hh:mm:ss") from None
        if value == "Reported" or value.startswith("Reported "):
            match = _LEADING_TIME.match(value[len("Reported ") :])
            try:
                at = datetime.strptime(match.group(1), _DATETIME) if match else None
            except ValueError:
                at = None
            return cls(HandshakeState.REPORTED, at)
        raise InputError(NODE_HANDSHAKE, text, "Requesting_<YYYY-MM-DD hh:mm:ss>, Deleted_<time> or Reported <time>")

    @classmethod
    def reported(cls, at: datetime | None = None) -> Handshake:
        """What an older HAMi device plugin answers; harmless for v2.9 schedulers, which ignore it."""
        return cls(HandshakeState.REPORTED, (at or datetime.now()).replace(microsecond=0, tzinfo=None))
