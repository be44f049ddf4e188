"""YAML files (the device-config, demo scenarios) read with one readable line for a syntax error."""

from __future__ import annotations

from typing import Any

import yaml

from hami_mig.errors import InputError


class YamlSyntaxError(InputError):
    """Not YAML: the message names the file, the line, the column and the problem, on one line."""

    def __init__(self, source: str, line: int, column: int, problem: str) -> None:
        super().__init__(source, "<yaml>", problem)
        self.line = line
        self.column = column
        self.args = (f"{source}: invalid YAML at line {line}, column {column}: {problem}",)


def load_yaml(text: str, source: str) -> Any:
    """`yaml.safe_load`, with PyYAML's multi-line caret dump turned into a YamlSyntaxError."""
    try:
        return yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = " ".join(str(exc.problem or exc.context or "not YAML").split())
        if exc.context and exc.problem:
            problem += f" ({' '.join(exc.context.split())})"
        line, column = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
        raise YamlSyntaxError(source, line, column, problem) from None
    except yaml.reader.ReaderError as exc:  # a control character: a position, not a mark
        before = text[: exc.position]
        line, column = before.count("\n") + 1, exc.position - (before.rfind("\n") + 1) + 1
        raise YamlSyntaxError(source, line, column, f"{exc.reason} (character #x{exc.character:04x})") from None
    except yaml.YAMLError as exc:
        raise YamlSyntaxError(source, 1, 1, " ".join(str(exc).split())) from None
