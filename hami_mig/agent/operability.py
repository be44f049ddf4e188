"""The agent's operability features behind one object the core calls at a few fixed points:

CDI specs for instances made on the fly, MIG mode per GPU, stepping back where the GPU Operator's MIG
manager owns the node, and naming who holds a GPU when the driver answers IN_USE.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from hami_mig.agent.cdi import CdiSpecs, parse_mig_minors
from hami_mig.agent.coexist import device_plugin_warning, mig_manager_reason
from hami_mig.agent.config import AgentConfig
from hami_mig.agent.events import EventPoster
from hami_mig.agent.inventory import Inventory
from hami_mig.agent.modes import MigModeManager
from hami_mig.kube.client import KubeClient
from hami_mig.kube.errors import ApiError
from hami_mig.mig.plan import Operation
from hami_mig.nvml import ApplyError, ApplyResult, HardwareError, NvmlBackend
from hami_mig.nvml import errors as E
from hami_mig.nvml.holders import GpuHolder, describe_holders, proc_holders
from hami_mig.nvml.migmode import MigDeviceNodes

log = logging.getLogger(__name__)


class Operability:
    def __init__(self, config: AgentConfig, backend: NvmlBackend, kube: KubeClient, events: EventPoster) -> None:
        self.config = config
        self.backend = backend
        self.kube = kube
        self.events = events
        self.cdi = (CdiSpecs(config.cdi_dir, config.mig_minors_path, Path(config.proc_root) / "devices",
                             config.cdi_base_spec or None) if config.cdi else None)
        self.modes = MigModeManager(config, backend, notify=self._node_event)
        self.step_back: str | None = None  # why every GPU is left alone (the GPU Operator owns MIG here)
        self._ignored = False
        self._plugin_warned = False

    def _node_event(self, reason: str, message: str, kind: str) -> None:
        self.events.node(self.config.node_name, reason, message, kind)

    # -- running beside the GPU Operator ----------------------------------------------------------
    def refresh_node(self) -> None:
        """Read the Node's labels; step back (or resume) when the GPU Operator's MIG manager appears (or goes)."""
        try:
            node = self.kube.get_node(self.config.node_name)
        except ApiError as exc:
            log.debug("node labels not read (%s); GPU Operator detection keeps its last answer", exc)
            return
        labels = dict((node.metadata.labels if node.metadata is not None else None) or {})
        reason = mig_manager_reason(labels)
        if reason is not None and self.config.ignore_gpu_operator:
            if not self._ignored:
                message = (f"--ignore-gpu-operator: hami-mig manages MIG although {reason.split(';')[0]}; make sure "
                           "the MIG manager is not deployed on this node, or the two will destroy each other's "
                           "instances")
                log.warning("%s", message)
                self._node_event("GPUOperatorIgnored", message, "Warning")
            self._ignored, reason = True, None
        else:
            self._ignored = False
        if reason != self.step_back:
            if reason is not None:
                log.warning("%s", reason)
                self._node_event("MIGManagerDetected", reason, "Warning")
            else:
                message = "the GPU Operator's MIG manager no longer manages this node; hami-mig manages its GPUs again"
                log.warning("%s", message)
                self._node_event("MIGManagerGone", message, "Normal")
            self.step_back = reason
        warning = device_plugin_warning(labels)
        if warning and not self._plugin_warned:
            log.warning("%s", warning)
        self._plugin_warned = bool(warning)

    # -- MIG mode ---------------------------------------------------------------------------------
    def manage_modes(self, inv: Inventory, pods_known: bool) -> bool:
        """One mode-management pass (only when the pods, hence the holders, are known); True: re-read GPUs
        (a mode or instances changed, or what the GPUs' reasons must say did)."""
        if not pods_known:
            return False
        before = self.modes.notes()
        return self.modes.reconcile(inv.devices, inv.held, self.step_back) or self.modes.notes() != before

    def notes(self) -> dict[str, str]:
        return self.modes.notes()

    # -- CDI --------------------------------------------------------------------------------------
    def prepare(self, mig_uuids: Sequence[str]) -> None:
        """Before Allocate records and answers: every MIG device it hands out has its CDI spec on disk."""
        if self.cdi is None:
            return
        for uuid in mig_uuids:
            if not self.cdi.has(uuid):  # a MIG UUID is never reused, so an existing file is still right
                self.cdi.write(self.backend.mig_device_nodes(uuid))

    def after_apply(self, result: ApplyResult) -> None:
        if self.cdi is None:
            return
        for step in result.destroyed:
            if step.instance is not None and step.instance.mig_uuid:
                self.cdi.remove(step.instance.mig_uuid)

    def sync_cdi(self, inv: Inventory) -> None:
        """Reconcile: drop specs of instances that are gone; write missing specs of instances pods hold."""
        if self.cdi is None:
            return
        if any(d.mig_mode == "unknown" for d in inv.devices):
            return  # an unreadable GPU's instances are unknown: never delete a spec a running pod may need
        present = {u: (d, hw) for d in inv.devices for hw in d.instances for u in hw.uuids()}
        for uuid in self.cdi.prune(present):
            log.info("CDI spec of %s removed: the instance no longer exists", uuid)
        for uuid in inv.held:
            if uuid not in present or self.cdi.has(uuid):
                continue
            dev, hw = present[uuid]
            ci = next(c for c in hw.compute if c.mig_uuid == uuid)
            try:
                self.cdi.write(MigDeviceNodes(uuid, dev.index, dev.uuid, self.backend.gpu_minor(dev.index),
                                              hw.gi_id, ci.ci_id))
            except Exception as exc:  # reconcile goes on; the next pass retries
                log.warning("CDI spec for held instance %s not written: %s", uuid, exc)

    # -- IN_USE -----------------------------------------------------------------------------------
    def explain_in_use(self, exc: ApplyError, ops: Sequence[Operation]) -> ApplyError:
        """The same error, naming who holds the GPU when the driver (or the busy check) said IN_USE."""
        if exc.code != E.IN_USE or not 0 <= exc.failed_step < len(ops):
            return exc
        gpu = ops[exc.failed_step].gpu_index
        holders = self.holders(gpu)
        found = describe_holders(holders) or (
            f"nobody found: NVML lists no process on GPU {gpu} and no known GPU client (DCGM, dcgm-exporter, "
            f"nvidia-persistenced) shows in {self.config.proc_root}")
        return ApplyError(f"{exc}; held by: {found}", exc.code, failed_step=exc.failed_step,
                          rolled_back=exc.rolled_back, rollback_failures=exc.rollback_failures,
                          not_restored=exc.not_restored)

    def holders(self, gpu: int) -> list[GpuHolder]:
        try:
            holders = self.backend.holders(gpu, self.config.proc_root)
            minor = self.backend.gpu_minor(gpu)
        except HardwareError:
            holders, minor = [], None
        minor = gpu if minor is None else minor
        files = [f"/dev/nvidia{minor}", *self._cap_files(minor)]
        return holders + proc_holders(self.config.proc_root, files, skip=[h.pid for h in holders])

    def _cap_files(self, minor: int) -> list[str]:
        try:
            table = parse_mig_minors(Path(self.config.mig_minors_path).read_text(encoding="utf-8"))
        except OSError:
            return []
        return [f"/dev/nvidia-caps/nvidia-cap{n}" for k, n in table.items() if k.startswith(f"gpu{minor}/")]
