"""Watching a node's pods over real HTTP: order, resume, 410 relist, cut streams, outages, stop()."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator

import pytest

from hami_mig.kube.client import KubeClient
from hami_mig.kube.errors import ApiGone
from hami_mig.kube.podwatch import NodePodWatcher, PodEvent, PodSnapshot
from hami_mig.testing.apiserver import FakeApiServer, pod_manifest

NODE = "node-a"  # the kube fixture's node (conftest)
Item = PodSnapshot | PodEvent


def summary(item: Item) -> tuple[str, ...]:
    if isinstance(item, PodSnapshot):
        return ("SNAPSHOT", *sorted(p.metadata.name for p in item.pods))
    assert item.pod is not None
    return (item.type, item.pod.metadata.name)


class Collector:
    """Runs a NodePodWatcher in a thread and hands its items to the test through a queue."""

    def __init__(self, watcher: NodePodWatcher) -> None:
        self.watcher = watcher
        self.items: queue.Queue[Item] = queue.Queue()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            for item in self.watcher.events():
                self.items.put(item)
        except BaseException as exc:  # surfaced by the test
            self.error = exc

    def next(self, timeout: float = 5.0) -> tuple[str, ...]:
        return summary(self.items.get(timeout=timeout))

    def stop(self) -> None:
        self.watcher.stop()
        self.thread.join(timeout=5)
        assert not self.thread.is_alive()


@pytest.fixture
def collect(kube: KubeClient) -> Iterator[type[Collector]]:
    made: list[Collector] = []

    def factory(watcher: NodePodWatcher) -> Collector:
        collector = Collector(watcher)
        made.append(collector)
        return collector

    yield factory  # type: ignore[misc]
    for collector in made:
        collector.stop()


def test_one_watch_sees_changes_in_order_then_ends_with_a_bookmark(api: FakeApiServer, kube: KubeClient) -> None:
    api.add_pod(pod_manifest("a", node=NODE))
    start = kube.list_node_pods(NODE).resource_version
    api.patch_pod("default", "a", {"metadata": {"annotations": {"x": "1"}}})
    api.add_pod(pod_manifest("b", node=NODE))
    api.add_pod(pod_manifest("elsewhere", node="node-b"))
    api.delete_pod("default", "a")
    watch = kube.watch_node_pods(NODE, start, timeout_seconds=1)
    began = time.monotonic()
    events = list(watch)
    assert time.monotonic() - began < 30  # ended by its 1 s timeout (a watch without one would not end)
    assert [(e.type, e.pod.metadata.name if e.pod else None) for e in events] == [
        ("MODIFIED", "a"), ("ADDED", "b"), ("DELETED", "a"), ("BOOKMARK", None),
    ]
    assert [int(e.resource_version) for e in events[:-1]] == sorted(int(e.resource_version) for e in events[:-1])
    assert watch.resource_version == str(api.resource_version)


def test_a_too_old_version_raises_gone(api: FakeApiServer, kube: KubeClient) -> None:
    api.add_pod(pod_manifest("a", node=NODE))
    start = kube.list_node_pods(NODE).resource_version
    api.patch_pod("default", "a", {"metadata": {"annotations": {"x": "1"}}})
    api.compact()
    with pytest.raises(ApiGone, match="too old"):
        list(kube.watch_node_pods(NODE, start, timeout_seconds=1))


def test_stop_ends_a_blocked_watch(api: FakeApiServer, kube: KubeClient) -> None:
    watch = kube.watch_node_pods(NODE, str(api.resource_version), timeout_seconds=30)
    done = threading.Event()
    thread = threading.Thread(target=lambda: (list(watch), done.set()), daemon=True)
    thread.start()
    api.wait_for(lambda: api.active_watches == 1)
    watch.stop()
    assert done.wait(3)


def test_watcher_snapshot_then_events_binding_and_deletion(api: FakeApiServer, kube: KubeClient, collect) -> None:  # type: ignore[no-untyped-def]
    api.add_pod(pod_manifest("running", node=NODE))
    c = collect(NodePodWatcher(kube, NODE, watch_timeout_s=1))
    assert c.next() == ("SNAPSHOT", "running")
    api.add_pod(pod_manifest("new"))
    api.bind_pod("default", "new", NODE)  # enters the node's field selector: ADDED
    assert c.next() == ("ADDED", "new")
    api.set_pod_phase("default", "running", "Succeeded")
    assert c.next() == ("MODIFIED", "running")
    api.delete_pod("default", "running")
    assert c.next() == ("DELETED", "running")
    time.sleep(1.3)  # the watch request times out and is resumed without a relist
    api.patch_pod("default", "new", {"metadata": {"labels": {"after": "timeout"}}})
    assert c.next() == ("MODIFIED", "new")
    assert c.items.empty()


def test_watcher_resumes_a_cut_stream_without_losing_events(api: FakeApiServer, kube: KubeClient, collect) -> None:  # type: ignore[no-untyped-def]
    c = collect(NodePodWatcher(kube, NODE, watch_timeout_s=5, backoff_s=(0.05, 0.2)))
    assert c.next() == ("SNAPSHOT",)
    api.wait_for(lambda: api.active_watches == 1)
    api.cut_watches()
    api.add_pod(pod_manifest("while-cut", node=NODE))  # happens while no watch is open
    assert c.next() == ("ADDED", "while-cut")
    assert c.items.empty() and c.watcher.resource_version == str(api.resource_version)


def test_watcher_relists_after_410(api: FakeApiServer, kube: KubeClient, collect) -> None:  # type: ignore[no-untyped-def]
    api.add_pod(pod_manifest("a", node=NODE))
    c = collect(NodePodWatcher(kube, NODE, watch_timeout_s=5, backoff_s=(0.3, 0.3)))
    assert c.next() == ("SNAPSHOT", "a")
    api.wait_for(lambda: api.active_watches == 1)
    api.cut_watches()
    api.add_pod(pod_manifest("b", node=NODE))
    api.compact()  # the history the watcher would resume from is gone: 410, list again
    assert c.next() == ("SNAPSHOT", "a", "b")
    api.delete_pod("default", "a")
    assert c.next() == ("DELETED", "a")


def test_watcher_rides_out_an_outage(api: FakeApiServer, kube: KubeClient, collect) -> None:  # type: ignore[no-untyped-def]
    c = collect(NodePodWatcher(kube, NODE, watch_timeout_s=5, backoff_s=(0.05, 0.1)))
    assert c.next() == ("SNAPSHOT",)
    api.down()
    time.sleep(0.3)  # several failed reconnects
    api.add_pod(pod_manifest("during-outage", node=NODE))
    api.up()
    assert c.next() == ("ADDED", "during-outage")
    assert c.error is None


def test_watcher_errors_that_retrying_cannot_fix_propagate(api: FakeApiServer, kube: KubeClient, collect) -> None:  # type: ignore[no-untyped-def]
    api.fail_next(1, 403, method="GET")
    c = collect(NodePodWatcher(kube, NODE))
    c.thread.join(timeout=5)
    assert type(c.error).__name__ == "ApiForbidden"


def test_watcher_stop_is_prompt(api: FakeApiServer, kube: KubeClient) -> None:
    watcher = NodePodWatcher(kube, NODE, watch_timeout_s=60)
    c = Collector(watcher)
    assert c.next() == ("SNAPSHOT",)
    api.wait_for(lambda: api.active_watches == 1)
    began = time.monotonic()
    c.stop()
    assert time.monotonic() - began < 30  # half the 60 s watch it interrupted
    assert watcher.stopped
