"""The extender over real HTTP(S): both nodeCacheCapable forms, prioritize scores, and 400s for bad bodies."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import urllib3

from hami_mig.scheduler.config import SchedulerConfig
from hami_mig.scheduler.extender import Extender
from hami_mig.scheduler.server import ExtenderServer
from hami_mig.scheduler.snapshot import StaticSource
from tests.scheduler.helpers import holding, node_obj, pod_obj, post

NODES = [node_obj("idle", 2), node_obj("busy", 2), node_obj("full", 1)]
PODS = [
    pod_obj("b", node="busy", phase="Running", annotations=holding("busy", 0, ("3g.20gb", 4))),
    pod_obj("f", node="full", phase="Running", annotations=holding("full", 0, ("7g.40gb", 0))),
]
POD = pod_obj("p", {"nvidia.com/gpumem": 8000})


def make(score: str = "binpack") -> Extender:
    return Extender(SchedulerConfig(score=score), StaticSource(NODES, PODS))  # type: ignore[arg-type]


@pytest.fixture
def server() -> Iterator[ExtenderServer]:
    with ExtenderServer(make()) as s:
        yield s


def test_filter_with_node_names(server: ExtenderServer) -> None:
    status, out = post(server.url + "/filter", {"pod": POD, "nodenames": ["idle", "busy", "full"]})
    assert status == 200
    assert out["nodenames"] == ["idle", "busy"]
    assert "nodes" not in out
    assert set(out["failedNodes"]) == {"full"} and out["error"] == ""


def test_filter_with_full_nodes_returns_the_node_objects(server: ExtenderServer) -> None:
    status, out = post(server.url + "/filter", {"Pod": POD, "Nodes": {"items": NODES}})  # Go matches any case
    assert status == 200
    assert [n["metadata"]["name"] for n in out["nodes"]["items"]] == ["idle", "busy"]
    assert out["nodes"]["items"][0] == NODES[0]
    assert "nodenames" not in out and set(out["failedNodes"]) == {"full"}


def test_prioritize_binpack_and_spread() -> None:
    names = ["idle", "busy", "full"]
    packed = {h["host"]: h["score"] for h in make("binpack").prioritize({"pod": POD, "nodenames": names})}
    spread = {h["host"]: h["score"] for h in make("spread").prioritize({"pod": POD, "nodenames": names})}
    assert packed == {"idle": 0, "busy": 3, "full": 0}  # 4 of 16 slices in use -> 2.5 -> 3 (a node that fits)
    assert spread == {"idle": 10, "busy": 7, "full": 0}
    assert all(0 <= s <= 10 for s in [*packed.values(), *spread.values()])


def test_prioritize_over_http(server: ExtenderServer) -> None:
    status, out = post(server.url + "/prioritize", {"pod": POD, "nodes": {"items": NODES}})
    assert status == 200 and [h["host"] for h in out] == ["idle", "busy", "full"]


@pytest.mark.parametrize("path", ["/filter", "/prioritize", "/bind", "/webhook"])
@pytest.mark.parametrize("body", [b"{", b"not json", b"\xff\xfe", b'{"a": [1, 2,]}', b"[" * 100_000])
def test_malformed_json_is_a_400_with_the_reason(server: ExtenderServer, path: str, body: bytes) -> None:
    status, out = post(server.url + path, None, raw=body)
    assert status == 400
    assert out["error"].startswith("malformed JSON")


@pytest.mark.parametrize(("path", "doc", "reason"), [
    ("/filter", [], "ExtenderArgs: a JSON object is required"),
    ("/filter", {"nodenames": ["a"]}, "ExtenderArgs.pod"),
    ("/filter", {"pod": POD}, "either nodes"),
    ("/filter", {"pod": POD, "nodenames": "a"}, "ExtenderArgs.nodenames"),
    ("/filter", {"pod": POD, "nodes": {"items": [{"kind": "Node"}]}}, "ExtenderArgs.nodes.items"),
    ("/prioritize", {"pod": 1, "nodenames": []}, "ExtenderArgs.pod"),
    ("/bind", {"podName": "p", "podNamespace": "default"}, "ExtenderBindingArgs.node"),
    ("/webhook", {"kind": "Pod"}, "AdmissionReview"),
    ("/webhook", {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}, "request with a uid"),
])
def test_wrong_documents_are_400s(server: ExtenderServer, path: str, doc: Any, reason: str) -> None:
    status, out = post(server.url + path, doc)
    assert status == 400 and reason in out["error"]


def test_methods_paths_and_health(server: ExtenderServer) -> None:
    http = urllib3.PoolManager(retries=False)
    assert http.request("GET", server.url + "/healthz").data == b"ok"
    assert http.request("GET", server.url + "/filter").status == 405
    assert http.request("POST", server.url + "/nope", body=b"{}").status == 404
    assert http.request("POST", server.url + "/filter", body=b"").status == 400
    # Many requests on one keep-alive connection, then the server still answers.
    for _ in range(20):
        assert post(server.url + "/filter", {"pod": POD, "nodenames": ["idle"]})[0] == 200


def test_bind_without_api_access_reports_an_error(server: ExtenderServer) -> None:
    status, out = post(server.url + "/bind", {"podName": "p", "podNamespace": "d", "podUID": "u", "node": "idle"})
    assert status == 200 and "no API access" in out["error"]


def make_cert(cert: Path, key: Path, name: str) -> None:
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", f"/CN={name}",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)


def served_cert(port: int) -> str:
    return ssl.DER_cert_to_PEM_cert(ssl.PEM_cert_to_DER_cert(ssl.get_server_certificate(("127.0.0.1", port))))


def same_cert(pem_file: Path, served: str) -> bool:
    return ssl.PEM_cert_to_DER_cert(pem_file.read_text()) == ssl.PEM_cert_to_DER_cert(served)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is needed to make a test certificate")
def test_https_and_certificate_renewal(tmp_path: Path) -> None:
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    make_cert(cert, key, "first")
    with ExtenderServer(make(), cert=str(cert), key=str(key), cert_check_s=0.0) as s:
        assert s.url.startswith("https://")
        context = ssl.create_default_context(cafile=str(cert))
        http = urllib3.PoolManager(ssl_context=context, retries=False)
        response = http.request("POST", s.url + "/filter", json={"pod": POD, "nodenames": ["idle"]})
        assert response.status == 200 and response.json()["nodenames"] == ["idle"]
        plain = urllib3.PoolManager(retries=False)
        with pytest.raises(urllib3.exceptions.HTTPError):
            plain.request("GET", s.url.replace("https", "http") + "/healthz", timeout=3)
        assert http.request("GET", s.url + "/healthz").data == b"ok"  # a bad client did not break it
        assert same_cert(cert, served_cert(s.port))

        renewed, renewed_key = tmp_path / "new.crt", tmp_path / "new.key"
        make_cert(renewed, renewed_key, "renewed")
        renewed_key.replace(key)  # what a Secret update looks like inside the pod (files swapped)
        renewed.replace(cert)
        assert same_cert(cert, served_cert(s.port)), "the renewed certificate is served without a restart"
