"""The mutating webhook: which pods go to hami-scheduler, the defaults it fills, the requests it refuses."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest

from hami_mig.mig.geometry import parse_device_config
from hami_mig.scheduler.config import SchedulerConfig
from hami_mig.scheduler.extender import Extender
from hami_mig.scheduler.server import ExtenderServer
from hami_mig.scheduler.snapshot import StaticSource
from hami_mig.scheduler.webhook import Webhook
from hami_mig.testing.apiserver.patching import json_patch
from tests.scheduler.helpers import pod_obj, post

WEBHOOK = Webhook(SchedulerConfig())


def review(pod: dict[str, Any], *, operation: str = "CREATE", kind: str = "Pod") -> dict[str, Any]:
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {"uid": "req-1", "kind": {"group": "", "version": "v1", "kind": kind},
                        "resource": {"group": "", "version": "v1", "resource": "pods"},
                        "operation": operation, "namespace": "default", "object": pod}}


def admit(pod: dict[str, Any], webhook: Webhook = WEBHOOK) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the response, the pod as the API server stores it after the patch)."""
    out = webhook.review(review(pod))
    assert out["apiVersion"] == "admission.k8s.io/v1" and out["kind"] == "AdmissionReview"
    response = out["response"]
    assert response["uid"] == "req-1"
    if "patch" not in response:
        return response, pod
    assert response["patchType"] == "JSONPatch"
    return response, json_patch(pod, json.loads(base64.b64decode(response["patch"])))


def limits(pod: dict[str, Any], index: int = 0) -> dict[str, str]:
    return dict(pod["spec"]["containers"][index]["resources"]["limits"])


def test_gpumem_pod_is_sent_to_hami_scheduler_with_a_default_count() -> None:
    response, after = admit(pod_obj("p", {"nvidia.com/gpumem": 8000}))
    assert response["allowed"] is True
    assert after["spec"]["schedulerName"] == "hami-scheduler"
    assert limits(after) == {"nvidia.com/gpumem": "8000", "nvidia.com/gpu": "1"}


def test_percentage_and_mode_pods_are_redirected_and_counts_kept() -> None:
    _, after = admit(pod_obj("p", {"nvidia.com/gpumem-percentage": 50, "nvidia.com/gpu": 2}))
    assert after["spec"]["schedulerName"] == "hami-scheduler" and limits(after)["nvidia.com/gpu"] == "2"
    _, after = admit(pod_obj("p", {"nvidia.com/gpu": 1}, annotations={"nvidia.com/vgpu-mode": "mig"}))
    assert after["spec"]["schedulerName"] == "hami-scheduler" and limits(after) == {"nvidia.com/gpu": "1"}


def test_pods_without_gpu_resources_are_unchanged() -> None:
    for pod in (pod_obj("cpu"), pod_obj("cpu", {"cpu": "1"}),
                pod_obj("cpu", {"cpu": "1"}, annotations={"nvidia.com/vgpu-mode": "mig"})):
        response, after = admit(pod)
        assert response == {"uid": "req-1", "allowed": True}
        assert after is pod


def test_a_gpu_count_alone_is_sent_to_the_scheduler() -> None:
    # mutateContainerResource (pkg/device/nvidia/device.go, v2.9.0): `resourceNameOK` alone makes hasResource true,
    # and Handle (pkg/scheduler/webhook.go) then sets pod.Spec.SchedulerName.
    response, after = admit(pod_obj("whole", {"nvidia.com/gpu": 1}))
    assert response["allowed"] and after["spec"]["schedulerName"] == "hami-scheduler"
    assert limits(after) == {"nvidia.com/gpu": "1"}


def test_gpu_pod_with_a_node_assigned_is_refused() -> None:
    # Handle (pkg/scheduler/webhook.go, v2.9.0): `return admission.Denied("pod has node assigned")`; TestPodHasNodeName
    pod = pod_obj("pinned", {"nvidia.com/gpumem": 1000}, node="gpu-node-1")
    response, _ = admit(pod)
    assert response["allowed"] is False
    assert response["status"]["message"].startswith("spec.nodeName: 'gpu-node-1'")
    assert "pod has a node assigned" in response["status"]["message"]
    assert admit(pod_obj("cpu", {"cpu": "1"}, node="gpu-node-1"))[0]["allowed"]  # not a GPU pod: untouched


def test_privileged_containers_are_skipped_and_a_pod_needs_containers() -> None:
    # Handle (v2.9.0): a privileged container is skipped (`continue`) before MutateAdmission
    pod = pod_obj("p", containers=[{"name": "priv", "securityContext": {"privileged": True},
                                    "resources": {"limits": {"nvidia.com/gpumem": "1000"}}}])
    response, after = admit(pod)
    assert response == {"uid": "req-1", "allowed": True} and after is pod
    pod["spec"]["containers"].append({"name": "main", "resources": {"limits": {"nvidia.com/gpumem": "1000"}}})
    _, after = admit(pod)
    assert "nvidia.com/gpu" not in after["spec"]["containers"][0]["resources"]["limits"]
    assert after["spec"]["containers"][1]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    # Handle (v2.9.0): `admission.Denied("pod has no containers")`; TestEmptyContainersDenied
    response, _ = admit(pod_obj("empty", containers=[]))
    assert response["allowed"] is False and "pod has no containers" in response["status"]["message"]


def test_every_gpu_container_gets_the_default_including_init_and_requests_only() -> None:
    pod = pod_obj("p", containers=[
        {"name": "a", "resources": {"limits": {"nvidia.com/gpumem": "1000"}}},
        {"name": "b"},
        {"name": "c", "resources": {"requests": {"nvidia.com/gpumem": "2000"}}},
    ])
    pod["spec"]["initContainers"] = [{"name": "i", "resources": {"limits": {"nvidia.com/gpucores": "30"}}}]
    response, after = admit(pod)
    assert response["allowed"]
    spec = after["spec"]
    assert spec["initContainers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert spec["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert "resources" not in spec["containers"][1]
    assert spec["containers"][2]["resources"] == {"requests": {"nvidia.com/gpumem": "2000", "nvidia.com/gpu": "1"},
                                                   "limits": {"nvidia.com/gpu": "1"}}


def test_default_count_follows_the_device_config() -> None:
    config = SchedulerConfig(device_config=parse_device_config("nvidia:\n  defaultGPUNum: 2\n"),
                             scheduler_name="gpu-scheduler")
    _, after = admit(pod_obj("p", {"nvidia.com/gpumem": 1000}), Webhook(config))
    assert limits(after)["nvidia.com/gpu"] == "2" and after["spec"]["schedulerName"] == "gpu-scheduler"


@pytest.mark.parametrize(("resources", "annotations", "field", "words"), [
    ({"nvidia.com/gpumem": "-5"}, {}, "nvidia.com/gpumem (container 'main')", "negative"),
    ({"nvidia.com/gpumem": "lots"}, {}, "nvidia.com/gpumem (container 'main')", "not a number"),
    ({"nvidia.com/gpumem-percentage": "150"}, {}, "nvidia.com/gpumem-percentage (container 'main')", "over 100"),
    ({"nvidia.com/gpumem": "300000"}, {}, "nvidia.com/gpumem (container 'main')", "largest MIG instance"),
    ({"nvidia.com/gpumem": "1000"}, {"nvidia.com/vgpu-mode": "turbo"}, "nvidia.com/vgpu-mode", "unknown: 'turbo'"),
    ({"nvidia.com/gpumem": "1000"}, {"nvidia.com/vgpu-mode": "mig,,"}, "nvidia.com/vgpu-mode", "unknown: ''"),
    # checkType (v2.9.0): strings.Contains("", "mig") is false, so an empty vgpu-mode fits no GPU anywhere
    ({"nvidia.com/gpumem": "1000"}, {"nvidia.com/vgpu-mode": ""}, "nvidia.com/vgpu-mode", "unknown: ''"),
])
def test_invalid_requests_are_rejected_naming_the_field(resources: dict[str, str], annotations: dict[str, str],
                                                        field: str, words: str) -> None:
    response, _ = admit(pod_obj("p", resources, annotations=annotations))
    assert response["allowed"] is False
    message = response["status"]["message"]
    assert message.startswith(field) and words in message, message
    assert response["status"]["code"] == 400 and "patch" not in response


def test_requests_hamis_scheduler_accepts_are_admitted() -> None:
    # GenerateResourceRequests / Fit (pkg/device/nvidia/device.go, v2.9.0): gpumem wins over the percentage,
    # gpucores over 100 is clamped, a gpumem of 0 means the whole GPU, a count of 0 asks for nothing.
    for resources in ({"nvidia.com/gpumem": "1000", "nvidia.com/gpumem-percentage": "10"},
                      {"nvidia.com/gpumem": "1000", "nvidia.com/gpucores": "150"},
                      {"nvidia.com/gpumem": "0"}, {"nvidia.com/gpu": "0", "nvidia.com/gpumem": "10"}):
        response, after = admit(pod_obj("p", resources))
        assert response["allowed"], (resources, response)
        assert after["spec"]["schedulerName"] == "hami-scheduler"


def test_largest_profile_follows_the_configured_geometries() -> None:
    small = parse_device_config("""
nvidia:
  knownMigGeometries:
  - models: ["A100-SXM4-40GB"]
    allowedGeometries:
    - [{name: 1g.5gb, memory: 5120, count: 7}]
""")
    webhook = Webhook(SchedulerConfig(device_config=small))
    response, _ = admit(pod_obj("p", {"nvidia.com/gpumem": 6000}), webhook)
    assert not response["allowed"] and "1g.5gb on NVIDIA A100-SXM4-40GB (4864 MiB)" in response["status"]["message"]
    assert admit(pod_obj("p", {"nvidia.com/gpumem": 4864}), webhook)[0]["allowed"]
    # With every layout allowed, the biggest instance of any known GPU is the limit.
    anything = Webhook(SchedulerConfig(device_config=small, geometries="any"))
    assert admit(pod_obj("p", {"nvidia.com/gpumem": 6000}), anything)[0]["allowed"]


def test_explicit_other_scheduler_and_non_mig_modes_are_left_alone_with_a_warning() -> None:
    pod = pod_obj("p", {"nvidia.com/gpumem": 1000})
    pod["spec"]["schedulerName"] = "volcano"
    response, _ = admit(pod)
    assert response["allowed"] and "patch" not in response and "volcano" in response["warnings"][0]
    response, _ = admit(pod_obj("p", {"nvidia.com/gpumem": 1000}, annotations={"nvidia.com/vgpu-mode": "hami-core"}))
    assert response["allowed"] and "patch" not in response and "excludes mig" in response["warnings"][0]
    pod = pod_obj("p", {"nvidia.com/gpumem": 1000})
    pod["spec"]["schedulerName"] = "default-scheduler"
    assert admit(pod)[1]["spec"]["schedulerName"] == "hami-scheduler"


def test_other_operations_and_kinds_are_allowed_untouched() -> None:
    pod = pod_obj("p", {"nvidia.com/gpumem": 1000})
    for doc in (review(pod, operation="UPDATE"), review(pod, kind="Deployment")):
        assert WEBHOOK.review(doc)["response"] == {"uid": "req-1", "allowed": True}


@pytest.fixture
def server() -> Iterator[ExtenderServer]:
    with ExtenderServer(Extender(SchedulerConfig(), StaticSource())) as s:
        yield s


def test_webhook_over_http(server: ExtenderServer) -> None:
    status, out = post(server.url + "/webhook", review(pod_obj("p", {"nvidia.com/gpumem": 8000})))
    assert status == 200 and out["response"]["allowed"] is True and out["response"]["patchType"] == "JSONPatch"
    status, out = post(server.url + "/webhook", review(pod_obj("p", {"nvidia.com/gpumem": "-5"})))
    assert status == 200 and out["response"]["allowed"] is False
    status, out = post(server.url + "/webhook", review("not a pod"))  # type: ignore[arg-type]
    assert status == 400 and "request.object" in out["error"]
