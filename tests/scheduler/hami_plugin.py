"""A stand-in for HAMi v2.9's NVIDIA device plugin in MIG mode, on one node of the fake API server.

It does what pkg/device-plugin/nvidiadevice/nvinternal/plugin does at v2.9.0, with HAMi's readers ported in
tests/hami_go.py: registers the GPUs (`RegisterInAnnotation`: getAPIDevices + MarshalNodeDevices), and on
each Allocate (`Allocate` in server.go) takes the next container's devices (`GetNextDeviceRequest`),
realizes each `[geometry-slot]` (`GenerateMigTemplate`: the GPU is reconfigured to the slot's geometry when
its current one differs, then the slot's position is handed out), erases the entry
(`eraseNextDeviceTypeFromAnnotation`) and, once nothing is left, sets bind-phase success and releases the
node lock (`podAllocationTrySuccess`). It also records what the real plugin would silently do wrong:
reconfiguring a GPU some running pod holds a slot of, or handing out a position that is already held.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hami_mig.kube.annotations import (
    BIND_PHASE,
    DEVICES_ALLOCATED,
    DEVICES_TO_ALLOCATE,
    NODE_LOCK,
    NODE_REGISTER,
    MigSlotRef,
)
from hami_mig.kube.nodelock import NodeLock
from hami_mig.mig.geometry import DeviceConfig
from hami_mig.testing.apiserver import FakeApiServer
from tests.hami_go import (
    DeviceInfo,
    GoDecodeError,
    allocation_try_success_v29,
    decode_pod_devices,
    erase_next_device_type_v29,
    get_next_device_request_v29,
    marshal_node_devices_v29,
    register_type_v29,
)


class AllocateFailed(Exception):
    """The plugin answered the kubelet with an error (after `podAllocationFailed`)."""


@dataclass
class Gpu:
    uuid: str
    nvml_name: str
    memory_mib: int
    counts: dict[str, int] | None = None  # the mig-parted config applied now (nv.migCurrent), None: none yet
    held: dict[int, str] = field(default_factory=dict)  # position -> pod uid holding it


class HamiPluginV29:
    def __init__(self, api: FakeApiServer, node: str, gpus: list[tuple[str, str, int]], config: DeviceConfig) -> None:
        self.api = api
        self.node = node
        self.gpus = {uuid: Gpu(uuid, name, mem) for uuid, name, mem in gpus}
        self.config = config
        self.violations: list[str] = []
        self.realized: dict[str, list[tuple[str, int]]] = {}  # pod uid -> (GPU, position) it got

    def register(self) -> None:
        devices = [DeviceInfo(ID=g.uuid, Index=i, Count=10, Devmem=g.memory_mib, Devcore=100,
                              Type=register_type_v29(g.nvml_name), Numa=0, Mode="mig", Health=True)
                   for i, g in enumerate(self.gpus.values())]
        annotations = {NODE_REGISTER: marshal_node_devices_v29(devices)}
        self.api.patch_node(self.node, {"metadata": {"annotations": annotations}})

    def _forget_finished(self) -> None:
        live = {p["metadata"]["uid"] for p in self.api.pods(self.node)
                if p["status"].get("phase") not in ("Succeeded", "Failed")}
        for gpu in self.gpus.values():
            gpu.held = {pos: uid for pos, uid in gpu.held.items() if uid in live}

    def allocate(self, namespace: str, name: str) -> list[tuple[str, int]]:
        """One kubelet Allocate for the pod's next container: the (GPU, position) pairs handed out."""
        self._forget_finished()
        pod = self.api.get_pod(namespace, name)
        ann = pod["metadata"].get("annotations") or {}
        text = ann.get(DEVICES_TO_ALLOCATE, "")
        try:
            index = get_next_device_request_v29(text)
        except GoDecodeError as exc:
            self._failed(pod)
            raise AllocateFailed(str(exc)) from None
        got: list[tuple[str, int]] = []
        for dev in decode_pod_devices(text)[index]:
            ref = MigSlotRef.parse(dev.UUID)
            if ref is None:
                self._failed(pod)
                raise AllocateFailed(f"{dev.UUID}: a bare GPU UUID in mig mode")
            got.append(self._realize(self.gpus[ref.gpu_uuid], ref, pod["metadata"]["uid"], f"{namespace}/{name}"))
        erased = erase_next_device_type_v29(text)
        patch: dict[str, str | None] = {DEVICES_TO_ALLOCATE: erased}
        if DEVICES_ALLOCATED not in ann:
            patch[DEVICES_ALLOCATED] = text
        self.api.patch_pod(namespace, name, {"metadata": {"annotations": patch}})
        self.realized.setdefault(pod["metadata"]["uid"], []).extend(got)
        if allocation_try_success_v29(erased):
            self._finish(pod, "success")
        return got

    def _realize(self, gpu: Gpu, ref: MigSlotRef, uid: str, who: str) -> tuple[str, int]:
        """GenerateMigTemplate: the slot's geometry must be the GPU's mig-parted config, else it is applied."""
        rule = next(r for r in self.config.rules if any(m in gpu.nvml_name for m in r.models))  # containsModel
        geometry = rule.geometries[ref.geometry_index]
        want = {e.name: e.count for e in geometry.entries}
        if gpu.counts != want:
            if gpu.held:
                self.violations.append(f"{who}: {gpu.uuid} reconfigured to geometry {ref.geometry_index} while "
                                       f"positions {sorted(gpu.held)} are held")
            gpu.counts = want
        if ref.slot in gpu.held:
            self.violations.append(f"{who}: position {ref.slot} of {gpu.uuid} handed out twice "
                                   f"(held by {gpu.held[ref.slot]})")
        gpu.held[ref.slot] = uid
        return gpu.uuid, ref.slot

    def _failed(self, pod: dict[str, object]) -> None:
        self._finish(pod, "failed")

    def _finish(self, pod: dict[str, object], phase: str) -> None:
        meta = pod["metadata"]
        assert isinstance(meta, dict)
        self.api.patch_pod(meta["namespace"], meta["name"], {"metadata": {"annotations": {BIND_PHASE: phase}}})
        lock = (self.api.get_node(self.node)["metadata"].get("annotations") or {}).get(NODE_LOCK)
        if lock and NodeLock.decode(lock).held_by(meta["namespace"], meta["name"]):
            self.api.patch_node(self.node, {"metadata": {"annotations": {NODE_LOCK: None}}})
