"""Fixtures for the deployment tests: render charts/hami-mig with a real Helm engine.

Helm comes from the PyPI package `helm-python-sdk` (import name `helm_python`): Helm v4's own Go SDK
behind a C ABI, so templates, `values.schema.json` validation and `helm lint` are Helm's, offline.
"""

from __future__ import annotations

import copy
import importlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.deploy.chartutil import CHART_DIR, NAMESPACE, RELEASE, Manifest, parse_manifests


@pytest.fixture(scope="session")
def helm() -> Any:
    return importlib.import_module("helm_python")  # helm-python-sdk, a declared test dependency


@pytest.fixture(scope="session")
def chart(helm: Any) -> Iterator[Any]:
    with helm.Chart.load(str(CHART_DIR)) as loaded:
        yield loaded


@pytest.fixture(scope="session")
def render_raw(chart: Any) -> Callable[..., dict[str, str]]:
    """render_raw(values) -> {template path: rendered text}, what `helm template` prints."""

    def _render(values: dict[str, Any] | None = None) -> dict[str, str]:
        rendered: dict[str, str] = chart.render(copy.deepcopy(values or {}), name=RELEASE, namespace=NAMESPACE)
        return rendered

    return _render


@pytest.fixture(scope="session")
def render(render_raw: Callable[..., dict[str, str]]) -> Callable[..., list[Manifest]]:
    """render(values) -> the parsed Kubernetes objects."""

    def _render(values: dict[str, Any] | None = None) -> list[Manifest]:
        return parse_manifests(render_raw(values))

    return _render
