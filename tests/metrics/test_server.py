"""The HTTP endpoint: /metrics negotiation, /healthz, /readyz, errors, and lifecycle."""

from __future__ import annotations

import gzip
import socket
import threading

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as om_families
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import CollectorRegistry

from hami_mig.agent.snapshot import NodeSnapshot
from hami_mig.metrics import AgentStats, MetricsServer, build_registry

from .expo import SnapshotBox, get
from .snapshots import busy_gpu, node

OM = "application/openmetrics-text; version=1.0.0; charset=utf-8"
# What Prometheus 2.42 sends when it scrapes.
PROMETHEUS_ACCEPT = ("application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
                     "text/plain;version=0.0.4;q=0.5,*/*;q=0.1")


def url(srv: MetricsServer, path: str) -> str:
    return f"http://127.0.0.1:{srv.port}{path}"


def test_metrics_plain_text_by_default(server: MetricsServer) -> None:
    r = get(url(server, "/metrics"))
    assert r.status == 200
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    names = {f.name for f in text_string_to_metric_families(r.body.decode())}
    assert {"nodeGPUMigInstance", "hami_mig_instances", "hami_mig_allocate_duration_seconds",
            "process_resident_memory_bytes"} <= names


@pytest.mark.parametrize("accept", [OM, PROMETHEUS_ACCEPT, "application/openmetrics-text"])
def test_metrics_openmetrics_when_asked(server: MetricsServer, accept: str) -> None:
    r = get(url(server, "/metrics"), {"Accept": accept})
    assert r.status == 200
    assert r.headers["content-type"].startswith("application/openmetrics-text; version=1.0.0")
    body = r.body.decode()
    assert body.endswith("# EOF\n")
    fams = {f.name: f for f in om_families(body)}  # type: ignore[no-untyped-call]
    assert fams["hami_mig_reshape_operations"].type == "counter"
    assert fams["hami_mig_build"].type == "info"
    assert fams["nodeGPUMigInstance"].type == "gauge"


def test_gzip_when_accepted(server: MetricsServer) -> None:
    r = get(url(server, "/metrics"), {"Accept-Encoding": "gzip"})
    assert r.headers.get("content-encoding") == "gzip"
    assert b"nodeGPUMigInstance" in gzip.decompress(r.body)


def test_healthz(server: MetricsServer) -> None:
    r = get(url(server, "/healthz"))
    assert (r.status, r.body) == (200, b"ok\n")


def test_readyz_follows_ready_fn(box: SnapshotBox, stats: AgentStats) -> None:
    state: dict[str, tuple[bool, str]] = {"now": (False, "not registered with the kubelet yet")}
    with MetricsServer(build_registry(box, stats), port=0, host="127.0.0.1", ready_fn=lambda: state["now"]) as srv:
        r = get(url(srv, "/readyz"))
        assert (r.status, r.body) == (503, b"not registered with the kubelet yet\n")
        assert get(url(srv, "/healthz")).status == 200  # alive while not ready
        state["now"] = (True, "ok")
        r = get(url(srv, "/readyz"))
        assert (r.status, r.body) == (200, b"ok\n")
        state["now"] = (False, "NVML unreachable: NVML_ERROR_GPU_IS_LOST")
        r = get(url(srv, "/readyz"))
        assert (r.status, r.body) == (503, b"NVML unreachable: NVML_ERROR_GPU_IS_LOST\n")


def test_readyz_when_the_check_itself_fails(box: SnapshotBox) -> None:
    def boom() -> tuple[bool, str]:
        raise ConnectionError("api server timeout")

    with MetricsServer(build_registry(box), port=0, host="127.0.0.1", ready_fn=boom) as srv:
        r = get(url(srv, "/readyz"))
        assert r.status == 503 and b"api server timeout" in r.body


@pytest.mark.parametrize("path", ["/", "/metric", "/metrics/x", "/../../etc/passwd", "/%ff%00", "/readyz/extra"])
def test_unknown_paths_are_404(server: MetricsServer, path: str) -> None:
    assert get(url(server, path)).status == 404
    assert get(url(server, "/healthz")).status == 200


def test_query_string_and_head(server: MetricsServer) -> None:
    assert get(url(server, "/metrics?name[]=x")).status == 200
    r = get(url(server, "/metrics"), method="HEAD")
    assert r.status == 200 and r.body == b"" and int(r.headers["content-length"]) > 0
    assert get(url(server, "/metrics"), method="POST").status == 501


def test_garbage_request_does_not_kill_the_server(server: MetricsServer) -> None:
    for junk in (b"\x00\x01\x02 garbage\r\n\r\n", b"GET\r\n\r\n", b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n"):
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
            s.sendall(junk)
            s.recv(1024)
    with socket.create_connection(("127.0.0.1", server.port), timeout=5):
        pass  # a client that connects and says nothing is left to the handler timeout
    assert get(url(server, "/metrics")).status == 200


def test_collector_failure_is_a_500_not_a_crash() -> None:
    class Broken:
        def collect(self) -> list[object]:
            raise RuntimeError("bug")

    r = CollectorRegistry()
    r.register(Broken())  # type: ignore[arg-type]
    with MetricsServer(r, port=0, host="127.0.0.1") as srv:
        resp = get(url(srv, "/metrics"))
        assert resp.status == 500 and b"bug" in resp.body
        assert get(url(srv, "/healthz")).status == 200


def test_each_scrape_sees_the_current_snapshot(server: MetricsServer, box: SnapshotBox) -> None:
    assert b'deviceidx="3"' in get(url(server, "/metrics")).body
    box.set(node(busy_gpu(0)))
    assert b'deviceidx="3"' not in get(url(server, "/metrics")).body


def test_concurrent_scrapes(server: MetricsServer) -> None:
    results: list[int] = []

    def scrape() -> None:
        for _ in range(5):
            results.append(get(url(server, "/metrics")).status)

    threads = [threading.Thread(target=scrape) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [200] * 40


def test_lifecycle() -> None:
    srv = MetricsServer(build_registry(lambda: NodeSnapshot(node="n")), port=0, host="127.0.0.1")
    assert srv.port == 0
    srv.start()
    port = srv.port
    assert port > 0 and srv.url == f"http://127.0.0.1:{port}"
    with pytest.raises(RuntimeError):
        srv.start()
    srv.stop()
    srv.stop()  # idempotent
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


def test_port_in_use_says_which(server: MetricsServer) -> None:
    clash = MetricsServer(CollectorRegistry(), port=server.port, host="127.0.0.1")
    with pytest.raises(OSError, match=f"cannot listen on 127.0.0.1:{server.port}"):
        clash.start()


def test_default_port_is_hamis() -> None:
    assert MetricsServer(CollectorRegistry()).port == 31993
