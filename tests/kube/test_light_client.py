"""The light path to the official client: the same requests and answers as the generated CoreV1Api, and an
agent process that loads only the parts of `kubernetes` it uses."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from kubernetes import client

from hami_mig.kube.client import KubeClient
from hami_mig.kube.corev1 import CoreV1
from hami_mig.testing.apiserver import FakeApiServer, pod_manifest

from .conftest import NODE


def test_answers_equal_the_generated_apis(api: FakeApiServer, kube: KubeClient) -> None:
    api.add_node(NODE)
    api.add_pod(pod_manifest("p", node=NODE, limits={"nvidia.com/gpumem": "4000"}))
    light, generated = CoreV1(kube.api_client), client.CoreV1Api(kube.api_client)
    selector = f"spec.nodeName={NODE}"
    assert light.list_pod_for_all_namespaces(field_selector=selector).items == \
        generated.list_pod_for_all_namespaces(field_selector=selector).items
    assert light.read_namespaced_pod("p", "default") == generated.read_namespaced_pod("p", "default")
    assert light.read_node(NODE) == generated.read_node(NODE)
    patch = {"metadata": {"annotations": {"a": "1"}}}
    merge = "application/merge-patch+json"
    patched = light.patch_namespaced_pod("p", "default", patch, _content_type=merge)
    assert patched.metadata is not None and patched.metadata.annotations == {"a": "1"}
    assert patched == generated.read_namespaced_pod("p", "default")
    node = light.patch_node_status(NODE, {"status": {"capacity": {"x/y": "2"}}}, _content_type=merge)
    assert node.status is not None and node.status.capacity is not None and node.status.capacity["x/y"] == "2"
    raw = light.read_node(NODE, _preload_content=False)  # a raw response, as the generated API gives
    assert json.loads(raw.data)["metadata"]["name"] == NODE
    assert light.list_node().items == generated.list_node().items  # any other method: the generated API


def test_errors_are_the_clients_own(api: FakeApiServer, kube: KubeClient) -> None:
    light = CoreV1(kube.api_client)
    with pytest.raises(client.ApiException) as info:
        light.read_namespaced_pod("missing", "default")
    assert info.value.status == 404
    with pytest.raises(client.ApiException) as info:
        light.read_node("missing", _preload_content=False)
    assert info.value.status == 404


def test_the_agent_loads_only_the_client_parts_it_uses() -> None:
    code = textwrap.dedent("""
        import sys
        import hami_mig.cli.device_plugin
        from hami_mig.kube.client import KubeClient
        from kubernetes import config
        config.load_incluster_config  # what a pod uses
        unused = ("kubernetes.dynamic", "kubernetes.stream", "kubernetes.client.api.core_v1_api",
                  "kubernetes.config.kube_config", "kubernetes_validate", "requests")
        print(sorted(m for m in unused if m in sys.modules))
        config.load_kube_config  # loaded when asked for
        import kubernetes
        print("kubernetes.config.kube_config" in sys.modules, bool(kubernetes.__version__), kubernetes.watch.Watch)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    first, second = out.stdout.splitlines()
    assert first == "[]"
    assert second.startswith("True True <class 'kubernetes.watch.watch.Watch'>")


def test_live_only_leaves_out_pods_that_ended(api: FakeApiServer, kube: KubeClient) -> None:
    for name, phase in (("running", "Running"), ("pending", "Pending"), ("done", "Succeeded"), ("crashed", "Failed")):
        api.add_pod(pod_manifest(name, node=NODE))
        api.set_pod_phase("default", name, phase)
    names = {p.metadata.name for p in kube.list_node_pods(NODE, live_only=True).pods if p.metadata}
    assert names == {"running", "pending"}
    assert len(kube.list_node_pods(NODE).pods) == 4


def test_the_kubeconfig_loader_imports_its_oidc_dependencies_only_when_used(tmp_path: Path) -> None:
    api = FakeApiServer().start()
    try:
        kubeconfig = api.write_kubeconfig(tmp_path / "kubeconfig")
        code = textwrap.dedent(f"""
            import sys
            from hami_mig.kube.client import KubeClient
            kube = KubeClient.from_kubeconfig({str(kubeconfig)!r})
            print(kube.api_client.configuration.host, "requests" in sys.modules, "oauthlib" in sys.modules)
            from kubernetes.config import kube_config
            session = kube_config.OAuth2Session(client_id="x")  # what an OIDC token refresh makes
            error = kube_config.oauthlib.oauth2.rfc6749.errors.InvalidClientIdError
            import requests_oauthlib
            print(type(session) is requests_oauthlib.OAuth2Session, error.__module__, "requests" in sys.modules)
        """)
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    finally:
        api.stop()
    first, second = out.stdout.splitlines()
    assert first.endswith(" False False") and first.startswith("http://127.0.0.1:")
    assert second == "True oauthlib.oauth2.rfc6749.errors True"
