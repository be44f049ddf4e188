"""Exit codes and small helpers every subcommand shares."""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
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
    """Load a JSON file (`-`: standard input) or raise CliError naming the file and the problem."""
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise CliError(f"{what} {path!r}: cannot read: {exc.strerror or exc}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise CliError(f"{what} {path!r}: not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None


def print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2, sort_keys=False))


def port(text: str) -> int:
    """argparse type for a TCP port: a bad value is a usage error (exit 2) before any work starts."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (0 to 65535)") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a port number (0 to 65535)")
    return value


def check_port_free(host: str, number: int, flag: str) -> None:
    """Fail at once (exit 1, the environment) when the port is taken, before a long run would need it."""
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, number))
    except OSError as exc:
        raise CliError(cannot_listen(flag, host, number, exc), EXIT_FAILURE) from None


def cannot_listen(flag: str, host: str, number: int, exc: OSError) -> str:
    """The one line every command prints when it cannot bind its port (an environment problem, exit 1)."""
    why = os.strerror(exc.errno) if exc.errno else (exc.strerror or str(exc))
    return f"{flag} {number}: cannot listen on {host}:{number}: {why}"
