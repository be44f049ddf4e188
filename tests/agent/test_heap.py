"""Heap trimming: at most once per interval unless forced, and a no-op where the C library has no malloc_trim."""

from __future__ import annotations

import platform

import pytest

from hami_mig.agent.heap import HeapTrimmer


def test_trims_at_most_once_per_interval_unless_forced() -> None:
    trim = HeapTrimmer(min_interval_s=3600)
    assert trim.available == (platform.libc_ver()[0] == "glibc")  # malloc_trim is glibc's
    if not trim.available:
        return
    assert trim() is True
    assert trim() is False  # within the interval
    assert trim(force=True) is True


def test_without_malloc_trim_nothing_happens(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("hami_mig.agent.heap._libc_function", lambda name: None)
    trim = HeapTrimmer(min_interval_s=0)
    assert not trim.available and trim() is False and trim(force=True) is False
