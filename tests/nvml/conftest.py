"""Fixtures: a simulated node and a backend bound to it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from hami_mig.nvml import NvmlBackend
from hami_mig.testing.nvmlsim import NvmlSim


@pytest.fixture
def sim() -> NvmlSim:
    return NvmlSim("A100-SXM4-80GB:2")


@pytest.fixture
def backend(sim: NvmlSim) -> Iterator[NvmlBackend]:
    b = NvmlBackend(sim)
    b.init()
    yield b
    b.shutdown()
