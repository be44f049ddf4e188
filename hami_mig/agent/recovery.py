"""Reconcile's repairs of interrupted work: finish every journalled Allocate, and leave no free GPU instance
without its compute instance. Retried within the pass and at every later pass until done."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from hami_mig.agent.config import AgentConfig
from hami_mig.agent.inventory import GeometryCache, Inventory
from hami_mig.agent.journal import Create, Entry, Journal
from hami_mig.agent.records import unreadable_records
from hami_mig.mig.plan import Operation
from hami_mig.mig.planner import decide
from hami_mig.mig.request import Request
from hami_mig.mig.state import GpuState
from hami_mig.nvml import NvmlBackend
from hami_mig.nvml.device import HwInstance

log = logging.getLogger(__name__)

RETRY_DELAYS_S = (0.05, 0.1, 0.2, 0.4)
"""Waits before the 2nd..5th attempt within one reconcile pass: a few one-off NVML errors pass in under 1 s."""
RETRY_SOON_S = 5.0
"""Wait before the first early reconcile pass while recovery is unfinished; it doubles with each pass that
still leaves work (an entry waiting on a busy instance needs the next NVML resync, not a pass every 5 s),
up to the reconcile interval."""

Place = tuple[str, str, int]  # GPU UUID, profile, start


class RepairCounter(Protocol):
    def count_reconcile_repair(self, kind: str) -> None: ...


@dataclass(frozen=True)
class Settlement:
    """What one journal entry needs now: destroys to run, and creates that cannot be settled yet."""

    destroys: tuple[Operation, ...]
    waiting: tuple[Create, ...]


def settle(entry: Entry, inv: Inventory, protect_all: bool) -> Settlement:
    """Per journalled create: gone, recorded by a live pod, or on a GPU hami-mig no longer manages -> done
    (the last left alone); free and unrecorded -> destroy; on an unreadable GPU, running processes, or while
    some pod's record is unreadable -> wait (never touched)."""
    destroys: list[Operation] = []
    waiting: list[Create] = []
    for create in entry.creates:
        dev = next((d for d in inv.devices if d.uuid == create.gpu_uuid), None)
        if dev is None or dev.mig_mode == "unknown":
            waiting.append(create)
            continue
        if inv.state_by_uuid(dev.uuid) is None:
            log.warning("recovery: %s, created for %s by an Allocate that did not finish, is on a GPU hami-mig "
                        "does not manage now (%s): left alone", create.label(), entry.pod,
                        inv.unmanaged.get(dev.index, "unmanaged"))
            continue
        hw = dev.find(create.profile, create.start)
        if hw is None or any(u in inv.held for u in hw.uuids()):
            continue
        if hw.busy or protect_all:
            waiting.append(create)
            continue
        destroys.append(Operation("destroy", dev.index, hw.profile, hw.start, dev.uuid))
    return Settlement(tuple(destroys), tuple(waiting))


@dataclass(frozen=True)
class Repair:
    """A GPU instance without compute instance and what to do with it: `first`, else `fallback`."""

    label: str
    first: Operation
    fallback: Operation


def planner_reuses(state: GpuState, hw: HwInstance, geos: GeometryCache, config: AgentConfig) -> bool:
    """Whether the planner, asked for this instance's memory, would hand out this very instance."""
    profile = state.model.profile(hw.profile)
    decision = decide([state], Request(memory_mib=profile.memory_mib), geos, policy=config.policy,
                      mode=config.geometries)
    return decision.fits and any(a.reuse and a.profile == hw.profile and a.start == hw.start
                                 for a in decision.allocations)


def repairs(inv: Inventory, geos: GeometryCache, config: AgentConfig, journalled: Collection[Place],
            protect_all: bool) -> list[Repair]:
    """For each free GI without CI on a managed GPU: complete it (create its CI) when the planner would reuse
    it, destroy it otherwise. One a pod's record names (its CI was lost) is left alone; one an unfinished
    Allocate created is destroyed; while some pod's record is unreadable nothing is destroyed."""
    recorded = {(h.gpu_uuid, h.profile, h.start) for _holder, h in inv.held.values()}
    out: list[Repair] = []
    for dev in inv.devices:
        state = inv.state_by_uuid(dev.uuid)
        if state is None:
            continue
        for hw in dev.instances:
            place = (dev.uuid, hw.profile, hw.start)
            if hw.compute or place in recorded:
                continue
            destroy = Operation("destroy", dev.index, hw.profile, hw.start, dev.uuid)
            complete = Operation("create", dev.index, hw.profile, hw.start, dev.uuid)
            label = f"{hw.profile}@{hw.start} on GPU {dev.index}"
            if place in journalled:
                out.append(Repair(label, destroy, complete))
            elif protect_all or planner_reuses(state, hw, geos, config):
                out.append(Repair(label, complete, destroy))
            else:
                out.append(Repair(label, destroy, complete))
    return out


class Recovery:
    """Runs inside reconcile, under the agent lock (no Allocate runs meanwhile)."""

    def __init__(self, backend: NvmlBackend, journal: Journal, geos: GeometryCache, config: AgentConfig,
                 stats: RepairCounter) -> None:
        self.backend = backend
        self.journal = journal
        self.geos = geos
        self.config = config
        self.stats = stats
        self.unfinished = True  # no pass finished yet, or the last one left work: reconcile early
        self._soon = RETRY_SOON_S  # the next early pass's wait
        self._told: set[tuple[str, tuple[Create, ...]]] = set()  # waiting entries already logged

    def run(self, inv: Inventory, pods: Sequence[Any], reread: Callable[[], Inventory]) -> bool:
        """Repair what needs it; True when the GPUs changed. Whatever fails is retried within the pass and
        again at the next one: journal entries stay until their instances are gone or recorded."""
        protect_all = bool(unreadable_records(pods))
        changed = False
        for attempt in range(len(RETRY_DELAYS_S) + 1):
            if attempt:
                time.sleep(RETRY_DELAYS_S[attempt - 1])
                try:
                    inv = reread()
                except Exception as exc:  # an NVML read failing is one more failed attempt
                    log.warning("recovery: cannot read the GPUs again: %s", exc)
                    continue
            finished, did = self._journal(inv, protect_all)
            changed |= did
            if did:
                try:
                    inv = reread()
                except Exception as exc:
                    log.warning("recovery: cannot read the GPUs again: %s", exc)
                    continue
            fixed, did = self._instances(inv, protect_all)
            changed |= did
            if finished and fixed:
                self.unfinished = bool(self.journal.pending())  # creates waiting for a GPU or a process
                if not self.unfinished:
                    self._soon = RETRY_SOON_S
                return changed
        self.unfinished = True
        log.error("recovery: unfinished after %d attempts; retrying in %.0f s", len(RETRY_DELAYS_S) + 1,
                  self._soon)
        return changed

    def next_wait(self, interval_s: float) -> float:
        """How long the reconcile loop may sleep: its interval, or less while recovery is unfinished (5 s,
        then 10, 20, ... up to the interval, while passes keep leaving work)."""
        if not self.unfinished:
            return interval_s
        wait = min(interval_s, self._soon)
        self._soon = min(self._soon * 2, max(interval_s, RETRY_SOON_S))
        return wait

    def _apply(self, ops: Sequence[Operation], protected: Collection[str]) -> str | None:
        """Run operations; the error text when they failed (the hardware layer re-checks every destroy)."""
        try:
            self.backend.apply(ops, tuple(protected))
        except Exception as exc:  # ApplyError, HardwareError, a lost GPU ...: reconcile must go on
            return str(exc)
        return None

    def _journal(self, inv: Inventory, protect_all: bool) -> tuple[bool, bool]:
        """Settle every journal entry: (all settled that can be now, GPUs changed)."""
        finished, changed = True, False
        for entry in self.journal.pending():
            plan = settle(entry, inv, protect_all)
            if plan.destroys:
                error = self._apply(plan.destroys, inv.held)
                if error is not None:
                    log.error("recovery: could not remove the unrecorded instances of %s: %s; retrying",
                              entry.pod, error)
                    finished = False
                    continue
                changed = True
                self.stats.count_reconcile_repair("orphan_destroyed")
                log.warning("recovery: removed %s, created for %s by an Allocate that did not finish",
                            ", ".join(f"{o.profile}@{o.start} on GPU {o.gpu_index}" for o in plan.destroys),
                            entry.pod)
            if plan.waiting and (entry.id, plan.waiting) not in self._told:
                self._told.add((entry.id, plan.waiting))
                log.warning("recovery: %s, created for %s by an Allocate that did not finish, cannot be checked "
                            "or is in use now; kept in the journal", ", ".join(c.label() for c in plan.waiting),
                            entry.pod)
            self.journal.resolve(entry.id, plan.waiting)
        return finished, changed

    def _instances(self, inv: Inventory, protect_all: bool) -> tuple[bool, bool]:
        """Complete or destroy every free GI without CI: (none left, GPUs changed)."""
        journalled = {(c.gpu_uuid, c.profile, c.start) for e in self.journal.pending() for c in e.creates}
        fixed, changed = True, False
        for repair in repairs(inv, self.geos, self.config, journalled, protect_all):
            for op in (repair.first, repair.fallback):
                if protect_all and op.op == "destroy":
                    continue
                error = self._apply([op], inv.held)
                if error is None:
                    changed = True
                    kind = "gi_completed" if op.op == "create" else "gi_destroyed"
                    self.stats.count_reconcile_repair(kind)
                    log.warning("recovery: GPU instance %s had no compute instance: %s", repair.label,
                                "completed" if op.op == "create" else "destroyed")
                    break
                log.error("recovery: GPU instance %s has no compute instance; %s failed: %s", repair.label,
                          "completing it" if op.op == "create" else "destroying it", error)
            else:
                fixed = False
        return fixed, changed
