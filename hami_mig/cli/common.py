"""Exit codes and small helpers every subcommand shares."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_BAD_INPUT = 2
EXIT_NOT_DONE = 3  # nothing fits (plan) / could not apply (apply)


class CliError(Exception):
    """An error for the user: printed as one line, mapped to an exit code."""

    def __init__(self, message: str, exit_code: int = EXIT_BAD_INPUT) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def read_json_file(path: str, what: str) -> Any:
    """Load a JSON file or raise CliError naming the file and the problem."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise CliError(f"{what} {path!r}: cannot read: {exc.strerror or exc}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise CliError(f"{what} {path!r}: not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None


def print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2, sort_keys=False))
