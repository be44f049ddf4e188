"""A fake API server per test, and a KubeClient reaching it over real HTTP through a kubeconfig file."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from hami_mig.kube.client import KubeClient, Timeouts
from hami_mig.testing.apiserver import FakeApiServer

NODE = "node-a"


@pytest.fixture
def api() -> Iterator[FakeApiServer]:
    with FakeApiServer() as server:
        yield server


@pytest.fixture
def kube(api: FakeApiServer, tmp_path: Path) -> Iterator[KubeClient]:
    path = api.write_kubeconfig(tmp_path / "kubeconfig")
    with KubeClient.from_kubeconfig(path, timeouts=Timeouts(connect_s=1, read_s=2, watch_s=2), node_name=NODE) as kc:
        yield kc
