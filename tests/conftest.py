"""Skips are listed at the end of every run; with HAMI_MIG_STRICT_SKIPS=1 (scripts/test.sh, CI) a skip of
anything but a real-GPU test (marker `gpu`) fails the run, so a missing tool or module cannot hide a test."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

STRICT = os.environ.get("HAMI_MIG_STRICT_SKIPS") == "1"


def _reason(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()  # type: ignore[attr-defined]
    if STRICT and report.skipped and not hasattr(report, "wasxfail") and item.get_closest_marker("gpu") is None:
        report.outcome = "failed"
        report.longrepr = (f"skipped, but only real-GPU tests (marker `gpu`) may skip under HAMI_MIG_STRICT_SKIPS=1: "
                           f"{_reason(report)}")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    skipped = [r for r in terminalreporter.stats.get("skipped", []) if isinstance(r, pytest.TestReport)]
    terminalreporter.section(f"skipped tests: {len(skipped)} (only real-GPU tests may skip)", sep="-")
    for report in skipped:
        terminalreporter.line(f"{report.nodeid}: {_reason(report)}")
