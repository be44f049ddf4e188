"""Error types shared by every layer, so the CLI can map each to one exit code and one line."""

from __future__ import annotations


class HamiMigError(Exception):
    """Base of every error hami-mig raises on purpose; its message is meant for a person."""


class InputError(HamiMigError, ValueError):
    """Bad input: a config, annotation, request or file. The message names field, value and what is allowed."""

    def __init__(self, field: str, value: object, allowed: str) -> None:
        self.field = field
        self.value = value
        self.allowed = allowed
        super().__init__(f"{field}: {value!r} is not valid; {allowed}")
