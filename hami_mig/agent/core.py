"""The node agent: one lock around decide-apply-record, a reconcile loop, and the pieces wired together."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from hami_mig.agent.allocate import Outcome, Ports, allocate, answer
from hami_mig.agent.badpods import fail_broken
from hami_mig.agent.config import AgentConfig
from hami_mig.agent.events import EventPoster
from hami_mig.agent.hami_lock import mark_bind_failed, pod_allocation_done, release_node_lock
from hami_mig.agent.heap import trim_heap
from hami_mig.agent.inventory import GeometryCache, Inventory, read_inventory
from hami_mig.agent.journal import Journal
from hami_mig.agent.node import gpumem_capacity, node_annotations
from hami_mig.agent.operability import Operability
from hami_mig.agent.records import INSTANCES_ANNOTATION, holdings, unreadable_records
from hami_mig.agent.recovery import Recovery
from hami_mig.agent.snapshot import NodeSnapshot
from hami_mig.agent.view import build_snapshot
from hami_mig.kube.client import KubeClient
from hami_mig.kube.errors import ApiError, ApiForbidden
from hami_mig.mig.catalogue import Catalogue, default_catalogue
from hami_mig.mig.plan import Decision, Operation
from hami_mig.nvml import ApplyError, ApplyResult, HardwareError, NvmlBackend
from hami_mig.nvml.errors import nvml_error_name
from hami_mig.nvml.inventory import NvmlInventory
from hami_mig.plugin import (
    AllocationError,
    ContainerAllocation,
    Device,
    DevicePluginServer,
    InvalidRequestError,
    MutableDeviceSource,
)

log = logging.getLogger(__name__)

REFRESH_DELAY_S = 0.05
"""How long after an Allocate the background refresh of the snapshot starts."""
REFRESH_MIN_INTERVAL_S = 0.1
"""Least time between two background refreshes: a burst of Allocates gets a picture every 0.1 s."""
SOCKET_NAME = "hami-mig.sock"


class Stats(Protocol):
    """The counters the agent feeds (hami_mig.metrics.AgentStats implements it)."""

    def observe_allocate(self, seconds: float, outcome: str) -> None: ...
    def count_reshape(self, op: str, result: str) -> None: ...
    def count_nvml_error(self, code_name: str) -> None: ...
    def count_reconcile_repair(self, kind: str) -> None: ...
    def count_api_error(self, kind: str) -> None: ...


class NullStats:
    def observe_allocate(self, seconds: float, outcome: str) -> None:
        pass

    def count_reshape(self, op: str, result: str) -> None:
        pass

    def count_nvml_error(self, code_name: str) -> None:
        pass

    def count_reconcile_repair(self, kind: str) -> None:
        pass

    def count_api_error(self, kind: str) -> None:
        pass


class Agent:
    """Owns the state lock; every mutation of a GPU happens inside `allocate` or `reconcile`."""

    def __init__(self, config: AgentConfig, backend: NvmlBackend, kube: KubeClient, *,
                 kubelet_dir: str | None = None, stats: Stats | None = None,
                 catalogue: Catalogue | None = None) -> None:
        self.config = config
        self.backend = backend
        self.kube = kube
        self.stats: Stats = stats or NullStats()
        self.geos = GeometryCache(config, catalogue or default_catalogue())
        self.source = MutableDeviceSource()
        self.events = EventPoster(kube, enabled=config.events, policy=config.policy)
        self.ops = Operability(config, backend, kube, self.events)  # CDI, MIG mode, GPU Operator, IN_USE holders
        # Read in full once, then kept current from the agent's own changes; resynced in full periodically.
        self.inventory = NvmlInventory(backend)
        self._nvml_error: str | None = None  # the last full read failed (NVML gone): read again before use
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._refresher: threading.Thread | None = None
        self._resyncer: threading.Thread | None = None
        self._stale = threading.Event()  # an Allocate changed GPUs or records since the snapshot was taken
        self._snapshot = NodeSnapshot(node=config.node_name)
        self._view = threading.Condition()  # guards the snapshot's publication (see _update)
        self._view_seq = 0  # pictures taken so far; a picture older than the published one is dropped
        self._shown_seq = 0
        self._changes = 0  # Allocates so far (each may change GPUs or records)
        self._shown_changes = 0  # how many of them the published snapshot reflects
        self._allocate_pods: list[Any] = []  # what the running Allocate listed, and the pod it patched
        self._patched: Any = None
        self._pods_after: tuple[int, list[Any]] | None = None  # the pods as the last Allocate left them
        self.snapshot_listeners: list[Callable[[], None]] = []  # told after a new snapshot (metrics render it)
        self._api_ok = False
        self._api_problem = "API server not reachable"
        self._nvml_ok = False
        self.history: list[Outcome] = []  # the last 20 successful allocations (demo, debugging)
        self.journal = Journal(config.state_dir)
        self.recovery = Recovery(backend, self.journal, self.geos, config, self.stats)
        self._unreadable_told: set[str] = set()  # the pods with unreadable records last reported
        self._free_since: dict[str, float] = {}  # MIG UUID -> when it was first seen free (idle release)
        kwargs: dict[str, Any] = {} if kubelet_dir is None else {"kubelet_dir": kubelet_dir}
        # HAMi's resourceCountName (nvidia.com/gpu unless the device-config renames it) is what we register.
        self.server = DevicePluginServer(config.names.count, SOCKET_NAME, self.source, self, **kwargs)

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> None:
        """Discover GPUs, advertise them, publish the node, then start serving the kubelet."""
        self.reconcile()
        self._report_geometries()
        self.server.start()
        self._thread = threading.Thread(target=self._loop, name="hami-mig-reconcile", daemon=True)
        self._thread.start()
        self._refresher = threading.Thread(target=self._refresh_loop, name="hami-mig-refresh", daemon=True)
        self._refresher.start()
        if self.config.nvml_resync_interval_s > 0:
            self._resyncer = threading.Thread(target=self._resync_loop, name="hami-mig-resync", daemon=True)
            self._resyncer.start()

    def stop(self, grace: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        self._stale.set()  # wakes the refresher, which sees the stop
        self.server.stop(grace)
        for thread in (self._thread, self._refresher, self._resyncer):
            if thread is not None:
                thread.join(timeout=grace + 5)
        self.events.close()

    def _report_geometries(self) -> None:
        """Say once which knownMigGeometries entry each managed GPU uses (HAMi never says, and mismatches
        silently): an operator sees a model string that matches nothing at start, not at the first pod."""
        if self.config.geometries != "config":
            return
        try:
            states = self._inventory([]).states
        except HardwareError:
            return
        for state in states:
            geos = self.geos(state)
            if geos.rule is None:
                log.warning("GPU %d (%s): no knownMigGeometries entry names this model; pods cannot get MIG "
                            "instances on it with --geometries config (add its model or use --geometries any)",
                            state.index, state.model.name)
                continue
            log.info("GPU %d (%s) uses knownMigGeometries[%d] (%r): %s", state.index, state.model.name, geos.rule,
                     geos.matched_model, "; ".join(f"[{g.index}] {g.describe()}" for g in geos.geometries))
            for skipped in geos.skipped:
                log.warning("GPU %d: %s; skipped", state.index, skipped)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.recovery.next_wait(self.config.reconcile_interval_s))
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self.reconcile(resync=False)  # the GPUs: the agent's picture, resynced by its own thread
            except Exception:  # the loop must survive anything; the next pass retries
                log.exception("reconcile pass failed; retrying in %.0fs", self.config.reconcile_interval_s)

    def poke(self) -> None:
        """Run a reconcile pass soon (after a pod terminated, say)."""
        self._wake.set()

    # -- kubelet Allocate ------------------------------------------------------------------------
    def allocate(self, device_ids: Sequence[str]) -> ContainerAllocation:
        started = time.monotonic()
        with self._lock:
            try:
                outcome = allocate(device_ids, self.config, self._ports(), self.geos)
            except AllocationError as exc:
                rejected = isinstance(exc, InvalidRequestError)
                self.stats.observe_allocate(time.monotonic() - started, "rejected" if rejected else "failed")
                log.warning("Allocate %s failed: %s", list(device_ids), exc)
                pod = getattr(exc, "pod", None)
                if pod is not None:
                    self.events.failed_for(pod, str(exc))
                target = getattr(exc, "target", None)
                if target is not None and target.mode == "hami":
                    mark_bind_failed(self.kube, target.pod, str(exc))
                    release_node_lock(self.kube, self.config.node_name, target.pod)
                self._patched, self._allocate_pods = None, []
                self._changed()  # a failed change may have re-read GPUs
                raise
            self.stats.observe_allocate(outcome.seconds, "reused" if not outcome.reshaped else "allocated")
            self.history = [*self.history[-19:], outcome]
            log.info("Allocate for %s container %d: %s -> %s", outcome.target.key, outcome.target.container,
                     "; ".join(outcome.decision.notes), ",".join(outcome.mig_uuids))
            self.events.allocated(outcome)
            if outcome.target.mode == "hami" and pod_allocation_done(outcome.target.pod):
                release_node_lock(self.kube, self.config.node_name, outcome.target.pod)
            # The snapshot (metrics, demo) and the advertised list are refreshed after the kubelet has its
            # answer, by a thread that does not hold up the next Allocate, from the pods this Allocate listed.
            patched, listed = self._patched, self._allocate_pods
            self._patched, self._allocate_pods = None, []  # one list alive at a time: less heap to keep
            uid = getattr(getattr(patched, "metadata", None), "uid", None)
            self._changed([patched if uid and p.metadata.uid == uid else p for p in listed])
            return answer(outcome, self.config)

    def _ports(self) -> Ports:
        return Ports(list_pods=self._allocate_list_pods, inventory=self._inventory, apply=self._apply,
                     patch_pod=self._patch_pod, prepare=self.ops.prepare, journal=self.journal,
                     verify=self._verify, outside_change=self.inventory.outside_change_seen)

    def _allocate_list_pods(self) -> list[Any]:
        """The node's pods for this Allocate, once HAMi pods with a corrupt devices annotation are failed
        (raises for this call's own); kept for the refresh that follows."""
        self._patched = None
        pods = self._list_pods()
        fail_broken(pods, self.kube, self.config.node_name, self.events, admitting=True)
        self._allocate_pods = pods
        return pods

    def _list_pods(self) -> list[Any]:
        try:
            # Pods that ended hold nothing and are never the one asking (the records' is_live): not listed.
            pods = list(self.kube.list_node_pods(self.config.node_name, live_only=True).pods)
        except ApiError as exc:
            self._api_ok = False
            self._api_problem = "API server: access denied (check the RBAC rules)" if isinstance(
                exc, ApiForbidden) else "API server not reachable"
            self.stats.count_api_error(type(exc).__name__)
            raise
        self._api_ok = True
        return pods

    def _inventory(self, pods: list[Any]) -> Inventory:
        """The agent's picture of the GPUs (no NVML call unless the last full read failed) with the pods' holds."""
        if self._nvml_error is not None or not self.inventory.loaded:
            self._resync()
            if self._nvml_error is not None:
                raise HardwareError(self._nvml_error)
        devices = self.inventory.devices()
        unreadable = unreadable_records(pods)
        if unreadable and set(unreadable) != self._unreadable_told:  # said once per set, not on every read
            self.stats.count_reconcile_repair("unreadable_record")
            log.error("pods %s carry an unreadable %s annotation: which MIG instance they hold is unknown, so no "
                      "instance is reused or destroyed until it is fixed or the pods end", ", ".join(unreadable),
                      INSTANCES_ANNOTATION)
        self._unreadable_told = set(unreadable)
        return read_inventory(devices, holdings(pods), self.config, step_back=self.ops.step_back,
                              notes=self.ops.notes(), protect_all=bool(unreadable))

    def _verify(self, pods: list[Any], decision: Decision) -> Inventory | None:
        """Check only the GPUs a plan touches (processes, the instances it reuses); a newer picture if they changed."""
        touches: dict[int, set[str]] = {}
        for a in decision.allocations:
            touches.setdefault(a.gpu_index, set()).update([a.uuid] if a.reuse and a.uuid else [])
        for op in decision.operations:
            touches.setdefault(op.gpu_index, set())
        try:
            changed = self.inventory.check(touches)
        except self.backend.nvml.NVMLError as exc:
            raise HardwareError(f"NVML: {exc}") from None
        return self._inventory(pods) if changed else None

    def _resync(self) -> bool:
        """Read every GPU in full (no agent lock: Allocates go on meanwhile); True when anything changed."""
        try:
            found = self.inventory.resync()
        except (HardwareError, self.backend.nvml.NVMLError) as exc:
            self._nvml_error = f"NVML: {exc}"
            self._nvml_ok = False
            log.error("cannot read the GPUs: %s", exc)
            return True
        changed = found.changed or self._nvml_error is not None
        self._nvml_error = None
        self._nvml_ok = True
        return changed

    def _resync_loop(self) -> None:
        """Every --nvml-resync-interval: notice what others changed (another tool, a reset) and act on it."""
        while not self._stop.wait(self.config.nvml_resync_interval_s):
            try:
                if self._resync():
                    self._stale.set()
                    self.poke()  # check records, CDI specs, MIG modes against the new reading
            except Exception:  # the thread must survive anything; the next pass retries
                log.exception("NVML resync failed")

    def _apply(self, ops: Sequence[Operation], protected: Sequence[str]) -> ApplyResult:
        try:
            result = self.backend.apply(ops, protected)
        except ApplyError as exc:
            self.stats.count_reshape(ops[0].op if ops else "create", "failed")
            if exc.code is not None:
                self.stats.count_nvml_error(nvml_error_name(exc.code))
            detailed = self.ops.explain_in_use(exc, ops)  # names who holds the GPU on IN_USE
            if detailed is exc:
                raise
            raise detailed from None
        for step in result.steps:
            self.stats.count_reshape(step.op.op, "ok")
        self.ops.after_apply(result)
        return result

    def _patch_pod(self, pod: Any, annotations: dict[str, str | None]) -> None:
        meta = pod.metadata
        try:
            self._patched = self.kube.patch_pod_annotations(meta.namespace, meta.name, annotations,
                                                            resource_version=meta.resource_version)
        except ApiError as exc:
            self.stats.count_api_error(type(exc).__name__)
            raise

    def _changed(self, pods: list[Any] | None = None) -> None:
        """An Allocate ended; `pods`: the node's pods as it left them (the refresher then need not list them)."""
        with self._view:
            self._changes += 1
            self._pods_after = (self._changes, pods) if pods is not None else None
        self._stale.set()

    def _refresh_loop(self) -> None:
        while not self._stop.is_set():
            self._stale.wait()
            # Let the answer reach the kubelet first (this thread would compete with it for the GIL), and
            # take the Allocates of a pod's several containers in one refresh.
            if self._stop.wait(REFRESH_DELAY_S):
                return
            self._stale.clear()
            self._refresh()
            self._tell_listeners()
            if self._stop.wait(REFRESH_MIN_INTERVAL_S):
                return

    def _tell_listeners(self) -> None:
        for listener in self.snapshot_listeners:
            try:
                listener()
            except Exception:  # a listener's bug must not stop the refreshes
                log.exception("snapshot listener failed")

    def _refresh(self) -> None:
        """A new picture from the agent's inventory and the pods, without the agent lock: an Allocate never
        waits for it, and a scrape is served the last published picture meanwhile."""
        with self._view:
            changes, seq = self._changes, self._take_seq()
            known = self._pods_after[1] if self._pods_after and self._pods_after[0] == changes else None
            self._pods_after = None
        try:
            pods = known if known is not None else self._list_pods()
            self._update(self._inventory(pods), pods, changes, seq)
        except (ApiError, HardwareError) as exc:
            log.debug("refresh after Allocate skipped: %s", exc)
            with self._view:  # readers waiting for this picture get the previous one
                self._shown_changes = max(self._shown_changes, changes)
                self._view.notify_all()
        trim_heap()  # the Allocate's pod lists are garbage now: collect them and give their pages back

    # -- reconcile -------------------------------------------------------------------------------
    def reconcile(self, resync: bool = True) -> None:
        """Re-read the node's pods (and with `resync` every GPU in full), refresh what is advertised and
        published, report drift."""
        if resync:
            self._resync()
        with self._lock:
            with self._view:
                changes, seq = self._changes, self._take_seq()
            try:
                pods = self._list_pods()
            except ApiError as exc:
                log.warning("reconcile: API server unreachable (%s); GPUs stay as they are", exc)
                pods = None
            if pods is not None:
                fail_broken(pods, self.kube, self.config.node_name, self.events, admitting=False)
            self.ops.refresh_node()
            try:
                inv = self._inventory(pods or [])
            except HardwareError as exc:
                log.error("reconcile: cannot read GPUs: %s", exc)
                self._show(NodeSnapshot(node=self.config.node_name, registered=self.server.registered,
                                        api_ok=self._api_ok, taken_at=time.time()), changes, seq=seq)
                return
            if self.ops.manage_modes(inv, pods_known=pods is not None):
                with contextlib.suppress(HardwareError):  # a MIG mode or instances changed: read them again
                    inv = self._inventory(pods or [])
            if pods is not None:
                self._check_records(inv)
                if self.recovery.run(inv, pods, lambda: self._inventory(pods)) or self._release_idle(inv):
                    with contextlib.suppress(HardwareError):
                        inv = self._inventory(pods)
            self.ops.sync_cdi(inv)
            self._update(inv, pods or [], changes, seq)
            self._publish(inv)
        self._tell_listeners()  # outside the lock

    def _release_idle(self, inv: Inventory) -> bool:
        """With --idle-release-seconds: destroy free instances nobody has used for that long."""
        if self.config.idle_release_s <= 0:
            return False
        now = time.monotonic()
        free = {i.uuid: (s, i) for s in inv.states for i in s.free() if i.uuid}
        self._free_since = {u: self._free_since.get(u, now) for u in free}
        ops = [Operation("destroy", s.index, i.profile, i.start, s.uuid) for u, (s, i) in free.items()
               if now - self._free_since[u] >= self.config.idle_release_s]
        if not ops:
            return False
        try:
            self.backend.apply(ops, tuple(inv.held))
        except (ApplyError, HardwareError) as exc:
            log.warning("idle release skipped: %s", exc)
            return False
        self.stats.count_reconcile_repair("idle_released")
        log.info("released %d idle instance(s): %s", len(ops), ", ".join(f"{o.profile}@{o.start}" for o in ops))
        return True

    def _check_records(self, inv: Inventory) -> None:
        """Records naming instances NVML does not have: someone changed the GPU behind our back."""
        present = {u for d in inv.devices for hw in d.instances for u in hw.uuids()}
        for mig_uuid, (holder, held) in inv.held.items():
            if mig_uuid not in present:
                self.stats.count_reconcile_repair("missing_instance")
                log.error("pod %s holds %s (%s@%d on %s) but NVML has no such MIG device: it was destroyed "
                          "outside hami-mig; the pod must be restarted", holder.label(), mig_uuid, held.profile,
                          held.start, held.gpu_uuid)

    def _update(self, inv: Inventory, pods: list[Any], changes: int, seq: int) -> None:
        """Publish a picture taken after the first `changes` Allocates, numbered `seq` when its reading began;
        one begun before the published picture (a refresh overtaken by a reconcile pass) is dropped."""
        waiting = sum(1 for p in pods if getattr(p.status, "phase", None) == "Pending")
        snapshot = build_snapshot(self.config.node_name, inv, self.geos, pods_waiting=waiting,
                                  registered=self.server.registered, api_ok=self._api_ok)
        managed = {s.uuid for s in inv.states}
        devices = [
            Device(id=f"{d.uuid}-{n}", healthy=d.mig_mode == "enabled", numa_node=d.numa_node, group=d.uuid)
            for d in inv.devices if d.uuid in managed for n in range(self.config.split_count)
        ]
        self._show(snapshot, changes, devices, seq=seq)

    def _take_seq(self) -> int:
        """The number of a picture whose reading begins now (call with `self._view` held)."""
        self._view_seq += 1
        return self._view_seq

    def _show(self, snapshot: NodeSnapshot, changes: int, devices: list[Device] | None = None, *,
              seq: int) -> None:
        with self._view:
            if seq < self._shown_seq:
                return
            self._shown_seq = seq
            self._snapshot = snapshot
            self._shown_changes = max(self._shown_changes, changes)
            if devices is not None:
                self.source.set_devices(devices)
            self._view.notify_all()

    def _publish(self, inv: Inventory) -> None:
        try:
            self.kube.patch_node_metadata(self.config.node_name, annotations=node_annotations(inv, self.config))
            managed = {s.uuid for s in inv.states}
            self.kube.patch_node_resources(self.config.node_name,
                                           gpumem_capacity(inv.devices, managed, self.config.names.memory))
        except ApiError as exc:
            self.stats.count_api_error(type(exc).__name__)
            log.warning("could not publish the node's GPUs: %s", exc)

    # -- views -----------------------------------------------------------------------------------
    def snapshot(self, wait_s: float = 1.0) -> NodeSnapshot:
        """The picture taken after the last Allocate: right after one it is refreshed in the background,
        and this waits for that (at most `wait_s`, then it is the previous picture). Never takes the lock."""
        with self._view:
            wanted = self._changes
            self._view.wait_for(lambda: self._shown_changes >= wanted, timeout=max(0.0, wait_s))
            return self._snapshot

    def current_snapshot(self) -> NodeSnapshot:
        """The last published picture, at once (what /metrics serves: a scrape never waits for a refresh)."""
        return self._snapshot

    def ready(self) -> tuple[bool, str]:
        problems = []
        if not self.server.registered:
            problems.append("not registered with the kubelet")
        if not self._nvml_ok:
            problems.append("NVML not reachable")
        if not self._api_ok:
            problems.append(self._api_problem)
        return (not problems, "; ".join(problems) or "ok")
