"""Reading an exposition back: families by name, raw sample lines, and a live server to scrape."""

from __future__ import annotations

import threading
import urllib.error
import urllib.request
from dataclasses import dataclass

from prometheus_client import generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import CollectorRegistry
from prometheus_client.samples import Sample

from hami_mig.agent.snapshot import NodeSnapshot


def text(registry: CollectorRegistry) -> str:
    return generate_latest(registry).decode()


def families(registry: CollectorRegistry) -> dict[str, Metric]:
    return {f.name: f for f in text_string_to_metric_families(text(registry))}


def samples(registry: CollectorRegistry, name: str) -> list[Sample]:
    return [s for f in text_string_to_metric_families(text(registry)) for s in f.samples if s.name == name]


def values(registry: CollectorRegistry, name: str, *keys: str) -> dict[tuple[str, ...], float]:
    """{label values in `keys` order: value} for one sample name."""
    return {tuple(s.labels[k] for k in keys): s.value for s in samples(registry, name)}


def lines(exposition: str, name: str) -> set[str]:
    """The raw sample lines of one series name."""
    return {ln for ln in exposition.splitlines() if ln.startswith((name + "{", name + " "))}


class SnapshotBox:
    """A snapshot function the test swaps the answer of, as the agent's state changes."""

    def __init__(self, snap: NodeSnapshot) -> None:
        self._lock = threading.Lock()
        self._snap = snap
        self.calls = 0

    def set(self, snap: NodeSnapshot) -> None:
        with self._lock:
            self._snap = snap

    def __call__(self) -> NodeSnapshot:
        with self._lock:
            self.calls += 1
            return self._snap


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes


def get(url: str, headers: dict[str, str] | None = None, method: str = "GET") -> Response:
    req = urllib.request.Request(url, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return Response(resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read())
    except urllib.error.HTTPError as err:
        return Response(err.code, {k.lower(): v for k, v in err.headers.items()}, err.read())
