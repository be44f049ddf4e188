"""With an API server (the fake one, over real HTTP): labels and pod records, read with GETs only. The ConfigMaps."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from hami_mig.agent.records import INSTANCES_ANNOTATION
from hami_mig.testing.apiserver import FakeApiServer
from hami_mig.testing.apiserver.server import pod_manifest
from hami_mig.testing.nvmlsim import NvmlSim
from tests.doctor.conftest import Run

Node = Callable[..., tuple[NvmlSim, list[str]]]
Doctor = Callable[..., Run]
NODE = "gpu-node-1"


@pytest.fixture
def api(tmp_path: Path) -> Iterator[tuple[FakeApiServer, str]]:
    with FakeApiServer() as server:
        yield server, server.write_kubeconfig(tmp_path / "kubeconfig")


def record(gpu: str, mig: str, profile: str, start: int) -> dict[str, str]:
    return {INSTANCES_ANNOTATION: json.dumps({"0": [{"gpu": gpu, "mig": mig, "profile": profile, "start": start,
                                                     "memory_mib": 9728}]})}


def test_pod_records_tell_hami_migs_instances_from_foreign_ones(node: Node, doctor: Doctor,
                                                                api: tuple[FakeApiServer, str]) -> None:
    server, kubeconfig = api
    sim, args = node("A100-SXM4-80GB:1")
    gpu = sim.snapshot()["gpus"][0]["uuid"]
    mine = sim.add_instance(0, "1g.10gb", 0, pids=[10])
    sim.add_instance(0, "1g.10gb", 1, pids=[11])
    server.add_node(NODE)
    server.add_pod(pod_manifest("train", node=NODE, annotations=record(gpu, mine, "1g.10gb", 0)))
    server.add_pod(pod_manifest("gone", node=NODE, annotations=record(gpu, "MIG-00000000-dead", "1g.10gb", 6)))
    run = doctor(*args, "--kubeconfig", kubeconfig, "--node-name", NODE)
    assert run.code == 0
    assert "node gpu-node-1: 2 pod(s) read" in run.lines("ok", "cluster.api")[0]
    (held,) = [line for line in run.lines("ok", "gpu.instance") if "1g.10gb@0" in line]
    assert "hami-mig's: held by pod default/train#0" in held
    (foreign,) = run.lines("warn", "gpu.instance")
    assert "1g.10gb@1" in foreign and "in use by pids 11 (no pod records it)" in foreign
    (gone,) = run.lines("warn", "gpu.instances")
    assert "pod default/gone#0 records MIG-00000000-dead" in gone and "restart pod default/gone" in gone
    assert {r.method for r in server.requests} == {"GET"}


def test_the_gpu_operators_mig_manager(node: Node, doctor: Doctor, api: tuple[FakeApiServer, str]) -> None:
    server, kubeconfig = api
    _sim, args = node()
    server.add_node(NODE, labels={"nvidia.com/mig.config": "all-1g.10gb", "nvidia.com/gpu.present": "true"})
    run = doctor(*args, "--kubeconfig", kubeconfig, "--node-name", NODE)
    assert run.code == 1
    (line,) = run.lines("fail", "cluster.mig-manager")
    assert "nvidia.com/mig.config=all-1g.10gb" in line and "steps back" in line
    assert "`kubectl label node gpu-node-1 nvidia.com/gpu.deploy.mig-manager=false --overwrite`" in line
    server.patch_node(NODE, {"metadata": {"labels": {"nvidia.com/gpu.deploy.mig-manager": "false"}}})
    run = doctor(*args, "--kubeconfig", kubeconfig, "--node-name", NODE)
    assert run.code == 0 and run.lines("ok", "cluster.mig-manager")
    assert "nvidia.com/gpu.deploy.device-plugin=false" in run.lines("warn", "cluster.device-plugin")[0]
    assert {r.method for r in server.requests} == {"GET"}


def test_api_trouble(node: Node, doctor: Doctor, api: tuple[FakeApiServer, str], tmp_path: Path) -> None:
    server, kubeconfig = api
    _sim, args = node()
    run = doctor(*args, "--kubeconfig", kubeconfig, "--node-name", "nobody")
    assert run.code == 1 and "node 'nobody' does not exist" in run.lines("fail", "cluster.api")[0]
    server.down()
    run = doctor(*args, "--kubeconfig", kubeconfig, "--node-name", NODE)
    assert run.code == 1 and "unreachable" in run.lines("fail", "cluster.api")[0]
    run = doctor(*args, "--kubeconfig", str(tmp_path / "missing"), "--node-name", NODE)
    assert run.code == 1 and "--kubeconfig" in run.lines("fail", "cluster.api")[0]


def test_a_real_node_without_a_cluster_says_what_it_did_not_check(tmp_path: Path) -> None:
    from hami_mig.doctor.cluster import read_cluster

    view = read_cluster(None, NODE, explicit=False)
    (check,) = view.checks
    assert check.status == "warn" and "not checked" in check.message and "--kubeconfig" in check.fix
    assert view.holdings is None


DEVICE_CONFIG = """\
nvidia:
  resourceCountName: nvidia.com/gpu
  deviceSplitCount: 10
  defualtMemory: 0
  knownMigGeometries:
  - models: [A100-SXM4-80GB]
    allowedGeometries:
    - - {name: 1g.10gb, memory: 9728, count: 7, cores: 14}
    - - {name: 3g.40gb, memory: 40192, count: 2}
  - models: [H100-SXM5-80GB]
    alowedGeometries: []
    allowedGeometries:
    - - {name: 1g.10gb, memory: 10240, count: 7}
hygon: {}
"""


def test_device_config_unknown_keys_are_named(node: Node, doctor: Doctor, tmp_path: Path) -> None:
    _sim, args = node()
    path = tmp_path / "device-config.yaml"
    path.write_text(DEVICE_CONFIG)
    run = doctor(*args, "--device-config", str(path))
    assert run.code == 0
    assert "2 knownMigGeometries entries" in run.lines("ok", "config.device")[0]
    (line,) = run.lines("warn", "config.device")
    assert "nvidia.defualtMemory (did you mean defaultMemory?)" in line
    assert "nvidia.knownMigGeometries[0].allowedGeometries[0][0].cores (did you mean core?)" in line
    assert "nvidia.knownMigGeometries[1].alowedGeometries (did you mean allowedGeometries?)" in line
    assert "hygon" not in line
    assert "matches knownMigGeometries[0]" in run.lines("ok", "gpu.geometry")[0]


def test_a_device_config_that_does_not_parse_exits_2(node: Node, doctor: Doctor, tmp_path: Path) -> None:
    _sim, args = node()
    path = tmp_path / "device-config.yaml"
    path.write_text("nvidia:\n  knownMigGeometries: {models: A100}\n")
    run = doctor(*args, "--device-config", str(path))
    assert run.code == 2
    assert "nvidia.knownMigGeometries" in run.lines("fail", "config.device")[0]
    run = doctor(*args, "--device-config", str(tmp_path / "missing.yaml"))
    assert run.code == 2 and "cannot read" in run.lines("fail", "config.device")[0]


def test_node_config(node: Node, doctor: Doctor, tmp_path: Path) -> None:
    sim, args = node("A100-SXM4-80GB:2")
    sim.set_mig_mode(1, 0)
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"nodeconfig": [{"name": "n1", "operatingmode": "mig", "OperatingModes": "x",
                                                "filterdevices": {"index": [1], "uids": []}}]}))
    run = doctor(*args, "--node-config", str(path), "--node-name", "n1")
    assert run.code == 0, run.out  # GPU 1 has MIG off, but config.json filters it out
    assert "filterdevices" in run.lines("ok", "gpu.mig-mode")[1]
    (keys,) = run.lines("warn", "config.node")
    assert "nodeconfig[0].OperatingModes (did you mean operatingmode?)" in keys
    assert "nodeconfig[0].filterdevices.uids (did you mean uuid?)" in keys
    path.write_text(json.dumps({"nodeconfig": [{"name": "n1", "operatingmode": "hami-core"}]}))
    run = doctor(*args, "--node-config", str(path), "--node-name", "n1")
    assert "runs in hami-core mode" in run.lines("warn", "config.node")[0]
    modes = run.lines("ok", "gpu.mig-mode")
    assert len(modes) == 2 and all("config.json runs it in hami-core mode" in line for line in modes)
    path.write_text('{"nodeconfig": [{"name": "n1", "operatingmode": "vgpu"}]}')
    assert doctor(*args, "--node-config", str(path), "--node-name", "n1").code == 1  # GPU 1's MIG off counts now
    sim.set_mig_mode(1, 1)
    run = doctor(*args, "--node-config", str(path), "--node-name", "n1")
    assert run.code == 2 and "'vgpu' is not valid" in run.lines("fail", "config.node")[0]


def test_bad_options_exit_2(node: Node, doctor: Doctor, tmp_path: Path) -> None:
    _sim, args = node()
    run = doctor(*args, "--node-config", str(tmp_path / "c.json"))
    assert run.code == 2 and "--node-config: needs --node-name" in run.err
    run = doctor("--backend", "sim", "--sim-gpus", "A100-SXM4-81GB:1")
    assert run.code == 2 and "unknown GPU model" in run.err
    run = doctor("--sim-gpus", "A100-SXM4-80GB:1")
    assert run.code == 2 and "--sim-gpus only applies with --backend sim" in run.err


def test_json_and_strict(node: Node, doctor: Doctor) -> None:
    sim, args = node("A100-SXM4-80GB:1")
    sim.add_instance(0, "1g.10gb", 0, pids=[3])
    doc = doctor(*args, "--json").json()
    assert doc["exit_code"] == 0 and doc["backend"] == "sim" and doc["summary"]["warn"] >= 1
    warned = [c for c in doc["checks"] if c["status"] == "warn"]
    assert all(c["fix"] and c["scope"] in ("environment", "input") for c in warned)
    assert {c["gpu"] for c in doc["checks"] if c["check"].startswith("gpu.")} == {0}
    assert doctor(*args, "--strict").code == 1
