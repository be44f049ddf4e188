"""KubeClient against the fake API server over real HTTP: reads, patches, conflicts, outages, events, nodes."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from hami_mig.kube.client import RBAC_PERMISSIONS, KubeClient, KubeConfigError, ObjectRef, Timeouts
from hami_mig.kube.errors import ApiConflict, ApiForbidden, ApiNotFound, ApiRejected, ApiUnavailable
from hami_mig.testing.apiserver import FakeApiServer, pod_manifest

NODE = "node-a"  # the kube fixture's node (conftest)



def test_list_node_pods_only_returns_this_nodes_pods(api: FakeApiServer, kube: KubeClient) -> None:
    api.add_pod(pod_manifest("mine", node=NODE, labels={"app": "x"}))
    api.add_pod(pod_manifest("mine-too", "team-b", node=NODE))
    api.add_pod(pod_manifest("other", node="node-b"))
    api.add_pod(pod_manifest("pending"))
    listing = kube.list_node_pods(NODE)
    assert sorted(p.metadata.name for p in listing.pods) == ["mine", "mine-too"]
    assert listing.resource_version == str(api.resource_version)
    assert [p.metadata.name for p in kube.list_node_pods(NODE, label_selector="app=x").pods] == ["mine"]
    assert api.requests[-1].query["fieldSelector"] == f"spec.nodeName={NODE}"


def test_get_pod_and_not_found(api: FakeApiServer, kube: KubeClient) -> None:
    api.add_pod(pod_manifest("p", limits={"nvidia.com/gpu": "1"}))
    pod = kube.get_pod("default", "p")
    assert pod.spec.containers[0].resources.limits == {"nvidia.com/gpu": "1"}
    with pytest.raises(ApiNotFound, match="get pods default/missing"):
        kube.get_pod("default", "missing")


@pytest.mark.parametrize("strategy", ["merge", "strategic"])
def test_patch_annotations_sets_and_removes(api: FakeApiServer, kube: KubeClient, strategy: str) -> None:
    api.add_pod(pod_manifest("p", annotations={"keep": "1", "drop": "2"}))
    before = api.get_pod("default", "p")["metadata"]["resourceVersion"]
    pod = kube.patch_pod_annotations("default", "p", {"hami.io/bind-phase": "success", "drop": None},
                                     strategy=strategy)  # type: ignore[arg-type]
    assert pod.metadata.annotations == {"keep": "1", "hami.io/bind-phase": "success"}
    assert int(pod.metadata.resource_version) > int(before)
    assert api.get_pod("default", "p")["metadata"]["annotations"] == pod.metadata.annotations
    expected = {"merge": "application/merge-patch+json", "strategic": "application/strategic-merge-patch+json"}
    assert api.requests[-1].content_type == expected[strategy]


def test_stale_resource_version_is_a_conflict(api: FakeApiServer, kube: KubeClient) -> None:
    api.add_pod(pod_manifest("p"))
    seen = kube.get_pod("default", "p").metadata.resource_version
    api.patch_pod("default", "p", {"metadata": {"annotations": {"scheduler": "wrote"}}})
    with pytest.raises(ApiConflict, match="modified") as info:
        kube.patch_pod_annotations("default", "p", {"a": "b"}, resource_version=seen)
    assert info.value.status == 409 and not info.value.retryable
    fresh = kube.get_pod("default", "p").metadata.resource_version
    pod = kube.patch_pod_annotations("default", "p", {"a": "b"}, resource_version=fresh)
    assert pod.metadata.annotations == {"scheduler": "wrote", "a": "b"}


def test_only_one_of_two_racing_writers_wins(api: FakeApiServer, kube: KubeClient) -> None:
    api.add_pod(pod_manifest("p"))
    version = kube.get_pod("default", "p").metadata.resource_version
    outcomes: list[str] = []

    def write(value: str) -> None:
        try:
            kube.patch_pod_annotations("default", "p", {"owner": value}, resource_version=version)
            outcomes.append("ok")
        except ApiConflict:
            outcomes.append("conflict")

    threads = [threading.Thread(target=write, args=(str(i),)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["conflict"] * 7 + ["ok"]


def test_server_down_fails_fast_and_recovers(api: FakeApiServer, kube: KubeClient) -> None:
    api.add_pod(pod_manifest("p"))
    kube.get_pod("default", "p")  # a pooled keep-alive connection now exists
    api.down()
    started = time.monotonic()
    with pytest.raises(ApiUnavailable, match="unreachable") as info:
        kube.get_pod("default", "p")
    # A refused connection is not retried nor waited on: well under one connect + read timeout (3 s here).
    assert time.monotonic() - started < kube.timeouts.connect_s + kube.timeouts.read_s
    assert info.value.retryable
    with pytest.raises(ApiUnavailable):
        kube.patch_pod_annotations("default", "p", {"a": "b"})
    api.up()
    assert kube.get_pod("default", "p").metadata.name == "p"


def test_503_and_5xx_and_429_are_unavailable(api: FakeApiServer, kube: KubeClient) -> None:
    api.add_pod(pod_manifest("p"))
    api.down("503")
    with pytest.raises(ApiUnavailable) as info:
        kube.get_pod("default", "p")
    assert info.value.status == 503 and info.value.retry_after_s == 1.0
    api.up()
    api.fail_next(1, 500)
    with pytest.raises(ApiUnavailable, match="injected fault") as info:
        kube.list_node_pods(NODE)
    assert info.value.status == 500
    api.fail_next(1, 429)
    with pytest.raises(ApiUnavailable) as info:
        kube.patch_pod_annotations("default", "p", {"a": "b"})
    assert info.value.status == 429 and info.value.retry_after_s == 1.0
    assert kube.get_pod("default", "p").metadata.annotations is None  # the failed patch was not applied


def test_forbidden_names_the_missing_permission(api: FakeApiServer, kube: KubeClient) -> None:
    api.add_node(NODE)
    api.fail_next(1, 403, method="PATCH", path="/status", message='nodes "node-a" is forbidden')
    with pytest.raises(ApiForbidden) as info:
        kube.patch_node_resources(NODE, {"nvidia.com/gpumem": "1"})
    assert "may not patch nodes/status" in str(info.value)
    assert "ClusterRole" in str(info.value)
    assert (info.value.verb, info.value.resource) == ("patch", "nodes/status")


def test_invalid_requests_are_rejected_not_retried(api: FakeApiServer, kube: KubeClient) -> None:
    api.add_pod(pod_manifest("p"))
    with pytest.raises(ApiRejected) as info:
        kube.patch_pod_metadata("default", "p", labels={"hami.io/vgpu-node": "not a valid value!"})
    assert info.value.status == 422 and not info.value.retryable


def test_slow_server_is_bounded_by_the_read_timeout(api: FakeApiServer, tmp_path: Path) -> None:
    api.add_pod(pod_manifest("p"))
    path = api.write_kubeconfig(tmp_path / "kc")
    with KubeClient.from_kubeconfig(path, timeouts=Timeouts(connect_s=0.5, read_s=0.3)) as slow:
        api.delay_next(1, 10.0)
        started = time.monotonic()
        with pytest.raises(ApiUnavailable, match="timed out"):
            slow.get_pod("default", "p")
        assert time.monotonic() - started < 8.0  # gave up at the 0.3 s read timeout, not the 10 s answer
        assert slow.get_pod("default", "p").metadata.name == "p"


def test_node_metadata_and_resources(api: FakeApiServer, kube: KubeClient) -> None:
    api.add_node(NODE, labels={"keep": "yes"}, capacity={"cpu": "8"})
    node = kube.patch_node_metadata(
        NODE, annotations={"hami.io/node-nvidia-register": "[]"}, labels={"nvidia.com/mig.capable": "true"}
    )
    assert node.metadata.labels == {"keep": "yes", "nvidia.com/mig.capable": "true"}
    assert kube.get_node(NODE).metadata.annotations == {"hami.io/node-nvidia-register": "[]"}
    node = kube.patch_node_resources(NODE, {"nvidia.com/gpumem": "81920"})
    assert node.status.capacity == {"cpu": "8", "nvidia.com/gpumem": "81920"}
    assert node.status.allocatable == {"cpu": "8", "nvidia.com/gpumem": "81920"}
    node = kube.patch_node_resources(NODE, {"nvidia.com/gpumem": None}, {"nvidia.com/gpumem": None})
    assert node.status.capacity == {"cpu": "8"}
    stale = node.metadata.resource_version
    api.patch_node(NODE, {"metadata": {"labels": {"other": "writer"}}})
    with pytest.raises(ApiConflict):
        kube.patch_node_metadata(NODE, labels={"x": "y"}, resource_version=stale)


def test_events_are_created_on_the_pod(api: FakeApiServer, kube: KubeClient) -> None:
    api.add_pod(pod_manifest("train", "team-a"))
    pod = kube.get_pod("team-a", "train")
    kube.create_event(pod, "MigReconfigured", "GPU 0 now 1x 3g.40gb + 2x 2g.20gb")
    kube.create_event(ObjectRef("team-a", "train"), "AllocateFailed", "x" * 5000, type="Warning")
    first, second = sorted(api.events("team-a"), key=lambda e: e["reason"])
    assert second["involvedObject"] == {
        "apiVersion": "v1", "kind": "Pod", "namespace": "team-a", "name": "train", "uid": pod.metadata.uid,
    }
    assert (second["reason"], second["type"]) == ("MigReconfigured", "Normal")
    assert second["source"] == {"component": "hami-mig", "host": NODE}
    assert second["reportingComponent"] == "hami-mig" and second["count"] == 1
    assert first["type"] == "Warning" and len(first["message"]) == 1024
    assert first["metadata"]["name"].startswith("train.")


def test_rbac_list_covers_every_call_the_client_makes(api: FakeApiServer, kube: KubeClient) -> None:
    """Replays a representative session and maps each recorded HTTP request to (verb, resource, subresource)."""
    api.add_node(NODE)
    api.add_pod(pod_manifest("p", node=NODE))
    listing = kube.list_node_pods(NODE)
    kube.get_pod("default", "p")
    kube.patch_pod_annotations("default", "p", {"a": "b"})
    kube.get_node(NODE)
    kube.patch_node_metadata(NODE, annotations={"a": "b"})
    kube.patch_node_resources(NODE, {"nvidia.com/gpumem": "1"})
    kube.create_event(ObjectRef("default", "p"), "R", "m")
    list(kube.watch_node_pods(NODE, listing.resource_version, timeout_seconds=1))
    used = set()
    for request in api.requests:
        parts = request.path.strip("/").split("/")[2:]
        if parts[0] == "namespaces":
            parts = parts[2:]
        resource, named, sub = parts[0], len(parts) > 1, parts[2] if len(parts) > 2 else ""
        verb = {"GET": "get" if named else ("watch" if request.watch else "list"), "PATCH": "patch",
                "POST": "create", "PUT": "update", "DELETE": "delete"}[request.method]
        used.add((verb, resource, sub))
    assert used == set(RBAC_PERMISSIONS)


def test_bad_kubeconfig_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(KubeConfigError, match="kubeconfig"):
        KubeClient.from_kubeconfig(str(tmp_path / "absent"))
    broken = tmp_path / "broken"
    broken.write_text(json.dumps({"apiVersion": "v1", "kind": "Config", "clusters": []}))
    with pytest.raises(KubeConfigError):
        KubeClient.from_kubeconfig(str(broken))
