"""One line per check: ok / warn / fail, what was found, and for a warn or fail the fix in one sentence."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

Status = Literal["ok", "warn", "fail"]
Scope = Literal["environment", "input"]
"""environment: the node, driver, GPUs or cluster; input: a ConfigMap file given to the doctor."""

EXIT_OK, EXIT_ENVIRONMENT, EXIT_INPUT = 0, 1, 2


@dataclass(frozen=True)
class Check:
    """One finding. `check` is a stable id (`gpu.mig-mode`); `subject` names what it is about (`GPU 0`)."""

    check: str
    status: Status
    subject: str
    message: str
    fix: str = ""
    scope: Scope = "environment"
    gpu: int | None = None

    def __post_init__(self) -> None:
        if self.status != "ok" and not self.fix:
            raise ValueError(f"{self.check}: a {self.status} needs its fix")
        for text in (self.subject, self.message, self.fix):
            if "\n" in text:
                raise ValueError(f"{self.check}: one line per check ({text!r})")

    def line(self) -> str:
        fix = f" -- fix: {self.fix}" if self.status != "ok" else ""
        return f"{self.status.upper():<4}  {self.check:<21} {self.subject}: {self.message}{fix}"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"check": self.check, "status": self.status, "subject": self.subject,
                               "message": self.message}
        if self.fix:
            out["fix"] = self.fix
        if self.gpu is not None:
            out["gpu"] = self.gpu
        out["scope"] = self.scope
        return out


def ok(check: str, subject: str, message: str, **kw: Any) -> Check:
    return Check(check, "ok", subject, message, **kw)


def warn(check: str, subject: str, message: str, fix: str, **kw: Any) -> Check:
    return Check(check, "warn", subject, message, fix, **kw)


def fail(check: str, subject: str, message: str, fix: str, **kw: Any) -> Check:
    return Check(check, "fail", subject, message, fix, **kw)


@dataclass
class Report:
    """Every check in display order, and the facts the JSON carries besides them."""

    checks: list[Check] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)

    def add(self, checks: Iterable[Check]) -> None:
        self.checks.extend(checks)

    def counts(self) -> dict[str, int]:
        seen = Counter(c.status for c in self.checks)
        return {s: seen.get(s, 0) for s in ("ok", "warn", "fail")}

    def exit_code(self, strict: bool = False) -> int:
        """1 when the environment fails a check, else 2 when only a given ConfigMap does, else 0.

        Warnings leave the exit code 0 (they name what to look at, hami-mig works around them) unless
        `strict`, where they count as environment failures.
        """
        failing = [c for c in self.checks if c.status == "fail" or (strict and c.status == "warn")]
        if any(c.scope == "environment" for c in failing):
            return EXIT_ENVIRONMENT
        return EXIT_INPUT if failing else EXIT_OK

    def render(self) -> str:
        counts = self.counts()
        summary = f"{counts['ok']} ok, {counts['warn']} warn, {counts['fail']} fail"
        return "\n".join([*(c.line() for c in self.checks), summary])

    def to_json(self, strict: bool = False) -> dict[str, Any]:
        return {"exit_code": self.exit_code(strict), "summary": self.counts(), **self.facts,
                "checks": [c.to_json() for c in self.checks]}
