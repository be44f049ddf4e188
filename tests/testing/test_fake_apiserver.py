"""The fake API server behaves like the real one where the agent depends on it; checked with the real client."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import urllib3
from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from hami_mig.testing.apiserver import FakeApiServer, pod_manifest


@pytest.fixture
def api() -> Iterator[FakeApiServer]:
    with FakeApiServer(history_limit=50) as server:
        yield server


@pytest.fixture
def core(api: FakeApiServer) -> Iterator[client.CoreV1Api]:
    api_client = api.api_client()
    yield client.CoreV1Api(api_client)
    api_client.close()  # type: ignore[no-untyped-call]


def status_of(call: Any) -> tuple[int, str]:
    with pytest.raises(ApiException) as info:
        call()
    body = json.loads(info.value.body)
    assert body["kind"] == "Status" and body["code"] == info.value.status
    return int(info.value.status), str(body["reason"])


def raw(api: FakeApiServer, method: str, path: str, body: Any = None, content_type: str = "application/json") -> Any:
    data = None if body is None else json.dumps(body).encode()
    response = urllib3.request(method, api.url + path, body=data, headers={"Content-Type": content_type})
    return response.status, json.loads(response.data) if response.data else None


def test_create_get_and_already_exists(api: FakeApiServer, core: client.CoreV1Api) -> None:
    created = core.create_namespaced_pod("team-a", client.V1Pod(
        metadata=client.V1ObjectMeta(name="p", labels={"app": "x"}),
        spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="busybox")]),
    ))
    assert created.metadata.uid and created.metadata.namespace == "team-a"
    assert created.status.phase == "Pending"
    assert core.read_namespaced_pod("p", "team-a").metadata.resource_version == created.metadata.resource_version
    again = pod_manifest("p", "team-a")
    assert status_of(lambda: core.create_namespaced_pod("team-a", again)) == (409, "AlreadyExists")
    assert status_of(lambda: core.read_namespaced_pod("nope", "team-a")) == (404, "NotFound")
    no_containers = {"metadata": {"name": "bad"}, "spec": {"containers": []}}
    assert raw(api, "POST", "/api/v1/namespaces/team-a/pods", no_containers)[0] == 422
    twins = {"metadata": {"name": "bad"}, "spec": {"containers": [{"name": "c"}, {"name": "c"}]}}
    assert raw(api, "POST", "/api/v1/namespaces/team-a/pods", twins)[0] == 422
    assert raw(api, "POST", "/api/v1/namespaces/team-a/pods", {**twins, "metadata": {"name": "Bad_Name"}})[0] == 422
    assert raw(api, "POST", "/api/v1/namespaces/x/pods", {**pod_manifest("q", "y")})[0] == 400
    generated = core.create_namespaced_pod("team-a", {"metadata": {"generateName": "job-"},
                                                      "spec": {"containers": [{"name": "c"}]}})
    assert generated.metadata.name.startswith("job-") and len(generated.metadata.name) == 9


def test_resource_version_is_monotonic_and_noop_writes_do_not_bump(api: FakeApiServer, core: client.CoreV1Api) -> None:
    api.add_pod(pod_manifest("p"))
    versions = [int(api.get_pod("default", "p")["metadata"]["resourceVersion"])]
    for value in ("1", "2", "2"):
        pod = core.patch_namespaced_pod("p", "default", {"metadata": {"annotations": {"a": value}}})
        versions.append(int(pod.metadata.resource_version))
    assert versions[0] < versions[1] < versions[2] == versions[3]
    assert api.resource_version == versions[2]


def test_selectors(api: FakeApiServer, core: client.CoreV1Api) -> None:
    api.add_pod(pod_manifest("a", node="n1", labels={"app": "web", "tier": "front"}))
    api.add_pod(pod_manifest("b", "other", node="n2", labels={"app": "db"}))
    api.add_pod(pod_manifest("c", labels={"app": "web"}))
    api.set_pod_phase("default", "c", "Running")

    def names(**kwargs: Any) -> list[str]:
        return sorted(p.metadata.name for p in core.list_pod_for_all_namespaces(**kwargs).items)

    assert names(field_selector="spec.nodeName=n1") == ["a"]
    assert names(field_selector="spec.nodeName=") == ["c"]  # unscheduled, as on a real server
    assert names(field_selector="spec.nodeName!=n1,status.phase=Pending") == ["b"]
    assert names(field_selector="metadata.namespace==other") == ["b"]
    assert names(label_selector="app=web") == ["a", "c"]
    assert names(label_selector="app in (db, cache)") == ["b"]
    assert names(label_selector="app notin (db),!tier") == ["c"]
    assert names(label_selector="tier,app!=db") == ["a"]
    assert [p.metadata.name for p in core.list_namespaced_pod("other").items] == ["b"]
    assert status_of(lambda: core.list_pod_for_all_namespaces(field_selector="spec.gpu=1")) == (400, "BadRequest")
    assert status_of(lambda: core.list_pod_for_all_namespaces(label_selector="app in web")) == (400, "BadRequest")


def test_merge_strategic_and_json_patches(api: FakeApiServer, core: client.CoreV1Api) -> None:
    api.add_pod(pod_manifest("p", containers=[{"name": "a", "image": "x:1"}, {"name": "b", "image": "y:1"}],
                             annotations={"keep": "1", "drop": "1"}))
    pod = core.patch_namespaced_pod("p", "default", {"metadata": {"annotations": {"drop": None, "new": "1"}}},
                                    _content_type="application/merge-patch+json")
    assert pod.metadata.annotations == {"keep": "1", "new": "1"}
    # strategic merge merges containers by name: only "b" changes (images are the mutable part of a pod spec)
    pod = core.patch_namespaced_pod("p", "default", {"spec": {"containers": [{"name": "b", "image": "y:2"}]}})
    assert [(c.name, c.image) for c in pod.spec.containers] == [("a", "x:1"), ("b", "y:2")]
    # a merge patch replaces the list, which changes the spec: forbidden for pods
    code, reason = status_of(lambda: core.patch_namespaced_pod(
        "p", "default", {"spec": {"containers": [{"name": "b", "image": "y:3"}]}},
        _content_type="application/merge-patch+json"))
    assert (code, reason) == (422, "Invalid")
    ops = [{"op": "test", "path": "/metadata/annotations/keep", "value": "1"},
           {"op": "add", "path": "/metadata/annotations/hami.io~1bind-phase", "value": "success"}]
    pod = core.patch_namespaced_pod("p", "default", ops)
    assert pod.metadata.annotations["hami.io/bind-phase"] == "success"
    failing = [{"op": "test", "path": "/metadata/annotations/keep", "value": "2"}]
    assert status_of(lambda: core.patch_namespaced_pod("p", "default", failing))[0] == 422
    assert raw(api, "PATCH", "/api/v1/namespaces/default/pods/p", {"a": 1}, "text/plain")[0] == 415
    assert raw(api, "PATCH", "/api/v1/namespaces/default/pods/p", {"metadata": {"annotations": {"n": 5}}},
               "application/merge-patch+json")[0] == 400


def test_spec_node_name_only_changes_through_binding(api: FakeApiServer, core: client.CoreV1Api) -> None:
    api.add_pod(pod_manifest("p"))
    assert status_of(lambda: core.patch_namespaced_pod("p", "default", {"spec": {"nodeName": "n1"}}))[0] == 422
    code, _ = raw(api, "POST", "/api/v1/namespaces/default/pods/p/binding",
                  {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "p"}, "target": {"name": "n1"}})
    assert code == 201
    assert api.get_pod("default", "p")["spec"]["nodeName"] == "n1"
    with pytest.raises(Exception, match="already assigned"):
        api.bind_pod("default", "p", "n2")


def test_status_subresource_and_stale_updates(api: FakeApiServer, core: client.CoreV1Api) -> None:
    api.add_pod(pod_manifest("p"))
    core.patch_namespaced_pod("p", "default", {"status": {"phase": "Running"}})
    assert api.get_pod("default", "p")["status"]["phase"] == "Pending"  # ignored on the main resource
    pod = core.patch_namespaced_pod_status("p", "default", {"status": {"phase": "Running"}})
    assert pod.status.phase == "Running"
    stale = core.read_namespaced_pod("p", "default")
    api.patch_pod("default", "p", {"metadata": {"labels": {"x": "y"}}})
    stale.metadata.annotations = {"a": "b"}
    assert status_of(lambda: core.replace_namespaced_pod("p", "default", stale)) == (409, "Conflict")
    stale_rv = {"metadata": {"resourceVersion": stale.metadata.resource_version, "annotations": {"a": "b"}}}
    assert status_of(lambda: core.patch_namespaced_pod("p", "default", stale_rv)) == (409, "Conflict")
    fresh = core.read_namespaced_pod("p", "default")
    fresh.metadata.annotations = {"a": "b"}
    assert core.replace_namespaced_pod("p", "default", fresh).metadata.annotations == {"a": "b"}


def test_validation_catches_client_bugs(api: FakeApiServer, core: client.CoreV1Api) -> None:
    api.add_pod(pod_manifest("p"))
    bad_label = {"metadata": {"labels": {"a": "b c"}}}
    assert status_of(lambda: core.patch_namespaced_pod("p", "default", bad_label))[0] == 422
    too_big = {"metadata": {"annotations": {"big": "x" * (256 * 1024)}}}
    assert status_of(lambda: core.patch_namespaced_pod("p", "default", too_big))[0] == 422
    event = {"metadata": {"name": "e"}, "involvedObject": {"kind": "Pod", "name": "p", "namespace": "other"}}
    assert status_of(lambda: core.create_namespaced_event("default", event))[0] == 422


def test_delete_with_finalizers_and_grace(api: FakeApiServer, core: client.CoreV1Api) -> None:
    api.add_pod(pod_manifest("plain"))
    core.delete_namespaced_pod("plain", "default")
    assert api.pods() == []
    created = api.add_pod({**pod_manifest("held"), "metadata": {"name": "held", "finalizers": ["x/y"]}})
    core.delete_namespaced_pod("held", "default")
    assert api.get_pod("default", "held")["metadata"]["deletionTimestamp"]
    stale = {"preconditions": {"resourceVersion": created["metadata"]["resourceVersion"]}}
    assert status_of(lambda: core.delete_namespaced_pod("held", "default", body=stale))[0] == 409
    core.patch_namespaced_pod("held", "default", {"metadata": {"finalizers": None}},
                              _content_type="application/merge-patch+json")
    assert api.pods() == []
    api.graceful_pod_deletion = True
    api.add_pod(pod_manifest("bound", node="n1"))
    core.delete_namespaced_pod("bound", "default", grace_period_seconds=30)
    assert api.get_pod("default", "bound")["metadata"]["deletionGracePeriodSeconds"] == 30
    api.finish_pod_deletion("default", "bound")
    assert api.pods() == []


def test_nodes_events_and_configmaps(api: FakeApiServer, core: client.CoreV1Api) -> None:
    api.add_node("n1", capacity={"cpu": "4"})
    node = core.patch_node_status("n1", {"status": {"capacity": {"nvidia.com/gpumem": "40960"}}})
    assert node.status.capacity == {"cpu": "4", "nvidia.com/gpumem": "40960"}
    core.patch_node("n1", {"status": {"capacity": {"cpu": "99"}}})
    assert api.get_node("n1")["status"]["capacity"]["cpu"] == "4"
    assert [n.metadata.name for n in core.list_node().items] == ["n1"]
    assert status_of(lambda: core.read_node("n2"))[0] == 404
    core.create_namespaced_event("default", {"metadata": {"name": "e1"}, "reason": "R", "type": "Warning",
                                             "involvedObject": {"kind": "Pod", "name": "p", "namespace": "default"}})
    listed = core.list_namespaced_event("default", field_selector="involvedObject.name=p,type=Warning").items
    assert [e.reason for e in listed] == ["R"]
    core.create_namespaced_config_map("kube-system", {"metadata": {"name": "hami-device-plugin"},
                                                      "data": {"config.json": "{}"}})
    assert core.read_namespaced_config_map("hami-device-plugin", "kube-system").data == {"config.json": "{}"}


def watch_events(core: client.CoreV1Api, **kwargs: Any) -> list[tuple[str, str]]:
    stream = watch.Watch().stream(core.list_pod_for_all_namespaces, **kwargs)  # type: ignore[no-untyped-call]
    return [(e["type"], e["raw_object"]["metadata"].get("name", "")) for e in stream]


def test_watch_replays_from_a_version_in_order_and_honours_timeout(api: FakeApiServer, core: client.CoreV1Api) -> None:
    api.add_pod(pod_manifest("a", node="n1"))
    start = str(api.resource_version)
    api.add_pod(pod_manifest("b"))
    api.bind_pod("default", "b", "n1")
    api.patch_pod("default", "a", {"metadata": {"labels": {"x": "1"}}})
    api.set_pod_phase("default", "a", "Succeeded")
    api.patch_pod("default", "a", {"metadata": {"labels": {"x": "2"}}})
    api.delete_pod("default", "a")
    began = time.monotonic()
    everything = watch_events(core, resource_version=start, timeout_seconds=1)
    assert 0.9 < time.monotonic() - began < 30  # ended by the 1 s timeout, not early and not never
    assert everything == [("ADDED", "b"), ("MODIFIED", "b"), ("MODIFIED", "a"), ("MODIFIED", "a"), ("MODIFIED", "a"),
                          ("DELETED", "a")]
    # filtered: "b" enters the node's selector (ADDED); "a" leaves the Pending phase (DELETED for that filter)
    filtered = watch_events(core, resource_version=start, timeout_seconds=1,
                            field_selector="spec.nodeName=n1,status.phase=Pending")
    assert filtered == [("ADDED", "b"), ("MODIFIED", "a"), ("DELETED", "a")]
    initial = watch_events(core, timeout_seconds=1, label_selector="x")
    assert initial == []
    assert watch_events(core, resource_version="0", timeout_seconds=1) == [("ADDED", "b")]


def test_watch_gone_after_compaction_or_history_limit(api: FakeApiServer, core: client.CoreV1Api) -> None:
    api.add_pod(pod_manifest("a"))
    start = str(api.resource_version)
    for i in range(60):  # history_limit=50
        api.patch_pod("default", "a", {"metadata": {"annotations": {"i": str(i)}}})
    with pytest.raises(ApiException) as info:
        watch_events(core, resource_version=start, timeout_seconds=1)
    assert info.value.status == 410
    recent = str(api.resource_version - 10)
    assert len(watch_events(core, resource_version=recent, timeout_seconds=1)) == 10
    api.compact()
    with pytest.raises(ApiException) as info:
        watch_events(core, resource_version=recent, timeout_seconds=1)
    assert info.value.status == 410


def test_live_watch_and_cut(api: FakeApiServer, core: client.CoreV1Api) -> None:
    seen: list[str] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            for event in watch.Watch().stream(core.list_pod_for_all_namespaces,  # type: ignore[no-untyped-call]
                                              resource_version=str(api.resource_version), timeout_seconds=10):
                seen.append(event["type"] + " " + event["object"].metadata.name)
        except BaseException as exc:
            failure.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    api.wait_for(lambda: api.active_watches == 1)
    api.add_pod(pod_manifest("live"))
    api.wait_for(lambda: seen == ["ADDED live"])
    api.cut_watches()
    thread.join(timeout=5)
    assert not thread.is_alive() and failure  # a broken chunked stream, not a clean end
    api.wait_for(lambda: api.active_watches == 0)


def test_outages_and_faults(api: FakeApiServer, core: client.CoreV1Api) -> None:
    api.add_pod(pod_manifest("p"))
    api.down()
    with pytest.raises(urllib3.exceptions.MaxRetryError):
        core.read_namespaced_pod("p", "default")
    api.up()
    api.down("503")
    assert status_of(lambda: core.read_namespaced_pod("p", "default")) == (503, "ServiceUnavailable")
    api.up()
    api.fail_next(2, 409, method="PATCH", path="/pods/p")
    core.read_namespaced_pod("p", "default")  # not matched
    label = {"metadata": {"labels": {"a": "b"}}}
    for _ in range(2):
        assert status_of(lambda: core.patch_namespaced_pod("p", "default", label))[0] == 409
    core.patch_namespaced_pod("p", "default", label)
    api.delay_next(1, 0.5, method="GET")
    began = time.monotonic()
    core.read_namespaced_pod("p", "default")
    assert time.monotonic() - began >= 0.5
    assert [r.method for r in api.requests][-2:] == ["PATCH", "GET"]


def test_concurrent_writers_get_unique_versions(api: FakeApiServer) -> None:
    api.add_pod(pod_manifest("p"))
    api_client = api.api_client()
    core = client.CoreV1Api(api_client)
    versions: list[int] = []
    lock = threading.Lock()

    def writer(worker: int) -> None:
        for i in range(10):
            pod = core.patch_namespaced_pod("p", "default", {"metadata": {"annotations": {f"w{worker}": str(i)}}})
            with lock:
                versions.append(int(pod.metadata.resource_version))

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(versions)) == 60
    assert api.get_pod("default", "p")["metadata"]["annotations"] == {f"w{n}": "9" for n in range(6)}
    api_client.close()  # type: ignore[no-untyped-call]


def test_wait_for_and_restart(api: FakeApiServer) -> None:
    with pytest.raises(TimeoutError, match="never"):
        api.wait_for(lambda: False, timeout=0.1, message="never")
    threading.Timer(0.05, lambda: api.add_pod(pod_manifest("later"))).start()
    api.wait_for(lambda: len(api.pods()) == 1, timeout=2)
    port = api.port
    api.stop()
    api.start()
    assert api.port == port and [p["metadata"]["name"] for p in api.pods()] == ["later"]
    assert api.state()["pods"][0]["metadata"]["name"] == "later"
