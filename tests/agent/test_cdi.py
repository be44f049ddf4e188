"""CDI specs for instances made on the fly: on disk before Allocate answers, valid, gone with the instance."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from hami_mig.agent.cdi import CDI_KIND, CdiSpecs, build_spec, caps_major, parse_mig_minors
from hami_mig.agent.config import RESOURCE_NAME
from hami_mig.mig.plan import Operation
from hami_mig.nvml.migmode import MigDeviceNodes
from hami_mig.testing.cluster import SimCluster
from hami_mig.testing.nvmlsim.caps import mig_minors_text, proc_devices_text
from tests.agent.conftest import MakeCluster

SCHEMA = json.loads((Path(__file__).parent / "cdi_spec.schema.json").read_text())


def validate(spec: dict[str, Any]) -> None:
    jsonschema.Draft7Validator.check_schema(SCHEMA)
    jsonschema.validate(spec, SCHEMA)


def spec_files(cdi_dir: Path) -> dict[str, dict[str, Any]]:
    """Device name -> spec, for every hami-mig spec file in the directory."""
    out: dict[str, dict[str, Any]] = {}
    for path in sorted(cdi_dir.glob("hami-mig_*.json")):
        spec = json.loads(path.read_text())
        for device in spec["devices"]:
            out[device["name"]] = spec
    return out


def test_mig_minors_table_matches_the_driver_layout() -> None:
    table = parse_mig_minors(mig_minors_text(2))
    assert table["config"] == 1 and table["monitor"] == 2
    assert table["gpu0/gi1/access"] == 12 and table["gpu0/gi1/ci0/access"] == 13
    assert caps_major(proc_devices_text(237)) == 237 and caps_major("Character devices:\n195 nvidia\n") is None


def test_spec_names_gpu_and_capability_nodes_and_validates() -> None:
    dev = MigDeviceNodes("MIG-1f6e6f53-52a6-5b2a-9a5e-5e4b1b7e3c11", 0, "GPU-x", 0, gi_id=1, ci_id=0)
    spec = build_spec(dev, parse_mig_minors(mig_minors_text()), major=511)
    validate(spec)
    assert spec["kind"] == CDI_KIND and spec["cdiVersion"] == "0.5.0"
    (device,) = spec["devices"]
    assert device["name"] == dev.mig_uuid
    edits = device["containerEdits"]
    assert edits["env"] == ["NVIDIA_VISIBLE_DEVICES=void"]
    paths = [n["path"] for n in edits["deviceNodes"]]
    assert paths == ["/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools", "/dev/nvidia0",
                     "/dev/nvidia-caps/nvidia-cap12", "/dev/nvidia-caps/nvidia-cap13"]
    assert edits["deviceNodes"][-1] == {"path": "/dev/nvidia-caps/nvidia-cap13", "type": "c", "major": 511,
                                        "minor": 13}


def test_gpu_minor_not_index_names_the_nodes_and_index_is_the_fallback() -> None:
    minors = parse_mig_minors(mig_minors_text())
    by_minor = build_spec(MigDeviceNodes("MIG-a", 0, "GPU-x", 3, 2, 0), minors)
    nodes = [n["path"] for n in by_minor["devices"][0]["containerEdits"]["deviceNodes"]]
    assert "/dev/nvidia3" in nodes and f"/dev/nvidia-caps/nvidia-cap{minors['gpu3/gi2/access']}" in nodes
    fallback = build_spec(MigDeviceNodes("MIG-a", 1, "GPU-x", None, 2, 0), minors)
    assert "/dev/nvidia1" in [n["path"] for n in fallback["devices"][0]["containerEdits"]["deviceNodes"]]


def test_missing_capability_line_and_pre_r470_names_are_refused(tmp_path: Path) -> None:
    from hami_mig.agent.cdi import CdiError

    with pytest.raises(CdiError, match="no 'gpu9/gi1/access' line"):
        build_spec(MigDeviceNodes("MIG-a", 9, "GPU-x", 9, 1, 0), parse_mig_minors(mig_minors_text(2)))
    with pytest.raises(CdiError, match="R470"):
        build_spec(MigDeviceNodes("MIG-GPU-abc/1/0", 0, "GPU-x", 0, 1, 0), parse_mig_minors(mig_minors_text()))
    specs = CdiSpecs(tmp_path / "cdi", tmp_path / "nope")
    with pytest.raises(CdiError, match="--mig-minors"):
        specs.write(MigDeviceNodes("MIG-a", 0, "GPU-x", 0, 1, 0))


def test_write_is_atomic_0644_and_prune_touches_only_our_files(tmp_path: Path, fake_proc: Path) -> None:
    cdi = tmp_path / "cdi"
    cdi.mkdir()
    (cdi / "nvidia.yaml").write_text("cdiVersion: 0.5.0\n")
    specs = CdiSpecs(cdi, fake_proc / "driver" / "nvidia-caps" / "mig-minors", fake_proc / "devices")
    old = os.umask(0o077)
    try:
        path = specs.write(MigDeviceNodes("MIG-a", 0, "GPU-x", 0, 1, 0))
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert sorted(p.name for p in cdi.iterdir()) == ["hami-mig_MIG-a.json", "nvidia.yaml"]  # no temp file left
    validate(json.loads(path.read_text()))
    specs.write(MigDeviceNodes("MIG-b", 0, "GPU-x", 0, 2, 0))
    assert specs.prune({"MIG-b"}) == ["MIG-a"]
    assert sorted(p.name for p in cdi.iterdir()) == ["hami-mig_MIG-b.json", "nvidia.yaml"]


def test_spec_is_on_disk_when_allocate_answers_and_leaves_with_the_instance(make_cluster: MakeCluster,
                                                                           tmp_path: Path) -> None:
    cdi = tmp_path / "cdi"
    with make_cluster(cdi=True) as c:
        c.submit("big", {"nvidia.com/gpumem": 70000})
        response = c.kubelet.allocate(RESOURCE_NAME, c.free_device_ids(1))  # the kubelet's side of the RPC
        names = [d.name for d in response.container_responses[0].cdi_devices]
        on_disk = spec_files(cdi)  # read right after the RPC returned: nothing was written later
        assert len(names) == 1 and names[0].startswith(f"{CDI_KIND}=MIG-")
        mig = names[0].split("=", 1)[1]
        assert mig in on_disk
        validate(on_disk[mig])
        envs = dict(response.container_responses[0].envs)
        assert "NVIDIA_VISIBLE_DEVICES" not in envs and envs["HAMI_MIG_DEVICES"] == mig
        hw = next(h for d in c.backend.devices() for h in d.instances if h.mig_uuid == mig)
        assert hw.profile == "7g.80gb"
        caps = [n["path"] for n in on_disk[mig]["devices"][0]["containerEdits"]["deviceNodes"]][-2:]
        table = parse_mig_minors(mig_minors_text())
        assert caps == [f"/dev/nvidia-caps/nvidia-cap{table[f'gpu0/gi{hw.gi_id}/access']}",
                        f"/dev/nvidia-caps/nvidia-cap{table[f'gpu0/gi{hw.gi_id}/ci{hw.ci_id}/access']}"]

        # The pod ends; a smaller pod reshapes GPU 0, destroying the free 7g: its spec goes with it.
        c.finish("big")
        c.reconcile()
        c.submit("small", {"nvidia.com/gpumem": 8000})
        a = c.admit("small")
        assert a.ok, a.error
        assert a.cdi_devices == (f"{CDI_KIND}={a.devices[0]}",)
        assert set(spec_files(cdi)) == {a.devices[0]}


def test_reconcile_removes_specs_of_instances_destroyed_behind_its_back(make_cluster: MakeCluster,
                                                                        tmp_path: Path) -> None:
    with make_cluster(cdi=True) as c:
        c.submit("p", {"nvidia.com/gpumem": 8000})
        a = c.admit("p")
        assert a.ok and set(spec_files(tmp_path / "cdi")) == {a.devices[0]}
        c.finish("p")
        hw = next((d, h) for d in c.backend.devices() for h in d.instances if h.mig_uuid == a.devices[0])
        c.backend.apply([Operation("destroy", hw[0].index, hw[1].profile, hw[1].start)])
        c.reconcile()
        assert spec_files(tmp_path / "cdi") == {}


def test_reconcile_rewrites_a_missing_spec_for_a_held_instance(make_cluster: MakeCluster, tmp_path: Path) -> None:
    with make_cluster(cdi=True) as c:
        c.submit("p", {"nvidia.com/gpumem": 8000})
        a = c.admit("p")
        path = tmp_path / "cdi" / f"hami-mig_{a.devices[0]}.json"
        before = path.read_text()
        path.unlink()  # e.g. /var/run/cdi is a tmpfs that was cleaned
        c.reconcile()
        assert path.read_text() == before


def test_unwritable_cdi_dir_fails_allocate_and_undoes_the_instance(make_cluster: MakeCluster, tmp_path: Path) -> None:
    (tmp_path / "cdi").write_text("not a directory")
    with make_cluster(cdi=True) as c:
        before = c.sim.snapshot()
        c.submit("p", {"nvidia.com/gpumem": 8000})
        a = c.admit("p")
        assert not a.ok and "CDI spec" in a.error and "cannot write" in a.error
        assert c.sim.snapshot() == before
        assert "hami-mig.io/instances" not in (c.api.get_pod("default", "p")["metadata"].get("annotations") or {})


def test_without_cdi_no_files_and_envs_as_before(make_cluster: MakeCluster, tmp_path: Path) -> None:
    with make_cluster() as c:
        c.submit("p", {"nvidia.com/gpumem": 8000})
        a = c.admit("p")
        assert a.ok and a.envs["NVIDIA_VISIBLE_DEVICES"] == a.devices[0] and a.cdi_devices == ()
        assert not (tmp_path / "cdi").exists()


def test_gpu_minor_from_nvml_names_the_device_node(make_cluster: MakeCluster, tmp_path: Path) -> None:
    def renumber(c: SimCluster) -> None:
        c.sim.set_minor(0, 4)
        c.sim.set_minor(1, 5)

    with make_cluster(cdi=True, before_start=renumber) as c:
        c.submit("p", {"nvidia.com/gpumem": 8000})
        a = c.admit("p")
        spec = spec_files(tmp_path / "cdi")[a.devices[0]]
        paths = [n["path"] for n in spec["devices"][0]["containerEdits"]["deviceNodes"]]
        assert "/dev/nvidia4" in paths and "/dev/nvidia0" not in paths


NVIDIA_CTK_SPEC = """\
cdiVersion: 0.5.0
kind: nvidia.com/gpu
devices:
- name: all
  containerEdits:
    deviceNodes:
    - path: /dev/nvidia0
containerEdits:
  env:
  - NVIDIA_VISIBLE_DEVICES=void
  - NVIDIA_CTK_LIBCUDA_DIR=/usr/lib/x86_64-linux-gnu
  deviceNodes:
  - path: /dev/nvidiactl
  - path: /dev/nvidia-modeset
  hooks:
  - hookName: createContainer
    path: /usr/bin/nvidia-cdi-hook
    args: [nvidia-cdi-hook, update-ldcache, --folder, /usr/lib/x86_64-linux-gnu]
  mounts:
  - hostPath: /usr/lib/x86_64-linux-gnu/libcuda.so.580.65.06
    containerPath: /usr/lib/x86_64-linux-gnu/libcuda.so.580.65.06
    options: [ro, nosuid, nodev, bind]
"""


def test_base_spec_brings_the_driver_libraries(tmp_path: Path, fake_proc: Path) -> None:
    from hami_mig.agent.cdi import CdiError

    base = tmp_path / "nvidia.yaml"
    base.write_text(NVIDIA_CTK_SPEC)
    specs = CdiSpecs(tmp_path / "cdi", fake_proc / "driver" / "nvidia-caps" / "mig-minors", fake_proc / "devices",
                     base)
    spec = json.loads(specs.write(MigDeviceNodes("MIG-a", 0, "GPU-x", 0, 1, 0)).read_text())
    validate(spec)
    edits = spec["devices"][0]["containerEdits"]
    assert edits["env"] == ["NVIDIA_VISIBLE_DEVICES=void", "NVIDIA_CTK_LIBCUDA_DIR=/usr/lib/x86_64-linux-gnu"]
    paths = [n["path"] for n in edits["deviceNodes"]]
    assert paths.count("/dev/nvidiactl") == 1 and "/dev/nvidia-modeset" in paths and "/dev/nvidia1" not in paths
    assert edits["mounts"][0]["containerPath"].endswith("libcuda.so.580.65.06")
    assert edits["hooks"][0]["args"][1] == "update-ldcache"
    base.write_text("cdiVersion: 0.5.0\nkind: nvidia.com/gpu\ndevices: []\n")
    with pytest.raises(CdiError, match="no top-level containerEdits"):
        specs.write(MigDeviceNodes("MIG-b", 0, "GPU-x", 0, 2, 0))
