"""The node agent's planner, wrapped for a cluster: geometries per model, and a memo per GPU state.

A filter asks the same question of thousands of GPUs whose states repeat (idle, one 1g in use, ...);
the planner's answer depends only on the GPU's model, index and in-use instances, so it is memoised
on exactly those. The per-GPU answer is the planner's own (`config_candidates`/`any_candidates` and
`Candidate.score`, as `decide` uses them); tests/scheduler/test_fit.py checks the result against
`decide` on whole nodes for both policies and both geometry modes.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from hami_mig.kube.annotations import MigSlotRef
from hami_mig.mig.geometry import GpuGeometries, resolve_for_gpu
from hami_mig.mig.plan import Decision
from hami_mig.mig.planner import Candidate, any_candidates, config_candidates, decide, plan_slot
from hami_mig.mig.request import Request
from hami_mig.mig.state import GpuState, Instance
from hami_mig.scheduler.config import SchedulerConfig

Signature = tuple[tuple[str, int], ...]
"""The in-use instances of a GPU as (profile, start) in GpuState's order: all the planner reads besides the model."""

MEMO_LIMIT = 200_000


def signature(gpu: GpuState) -> Signature:
    return tuple(sorted((i.key() for i in gpu.in_use()), key=lambda k: (k[1], k[0])))


@dataclass(frozen=True)
class GpuAnswer:
    """decide()'s pick on one GPU for one instance, or why it has none (decide's per-GPU words)."""

    best: Candidate | None
    why: str = ""


def take(gpu: GpuState, pick: Candidate) -> GpuState:
    """The GPU once `pick` is carried out (what apply_decision does): its instance in use, destroyed ones gone."""
    gone = {d.key() for d in pick.destroys}
    kept = [i for i in gpu.instances if i.key() not in gone and i.key() != (pick.profile.name, pick.start)]
    return gpu.with_instances([*kept, Instance(pick.profile.name, pick.start, True)])


class NodePlanner:
    """`decide`/`plan_slot` with the extender's device config, policy and geometry mode."""

    def __init__(self, config: SchedulerConfig) -> None:
        self.config = config
        self._geos: dict[str, GpuGeometries] = {}
        self._memo: dict[Request, dict[tuple[int, str, Signature], GpuAnswer]] = {}
        self._lock = threading.Lock()

    def geometries(self, gpu: GpuState) -> GpuGeometries:
        hit = self._geos.get(gpu.model.name)
        if hit is None:
            hit = resolve_for_gpu(self.config.device_config, gpu.model, self.config.catalogue)
            self._geos[gpu.model.name] = hit
        return hit

    def decide(self, gpus: list[GpuState] | tuple[GpuState, ...], request: Request) -> Decision:
        return decide(gpus, request, self.geometries, self.config.policy, self.config.geometries)

    def table(self, request: Request) -> dict[tuple[int, str, Signature], GpuAnswer]:
        """The memo of one request: (GPU index, model name, in-use signature) -> answer."""
        found = self._memo.get(request)
        if found is None:
            with self._lock:
                if sum(len(t) for t in self._memo.values()) >= MEMO_LIMIT:
                    self._memo.clear()
                found = self._memo.setdefault(request, {})
        return found

    def on_gpu(self, gpu: GpuState, sig: Signature, request: Request) -> GpuAnswer:
        """What decide() takes on this GPU with `sig` in use, for one instance (memoised)."""
        table = self.table(request)
        memo_key = (gpu.index, gpu.model.name, sig)
        hit = table.get(memo_key)
        if hit is None:
            bare = GpuState(gpu.index, "", gpu.model).with_instances(Instance(p, s, True) for p, s in sig)
            hit = table[memo_key] = self._answer(bare, request)
        return hit

    def _answer(self, gpu: GpuState, request: Request) -> GpuAnswer:
        """The candidate decide() picks on one GPU, through the planner's own candidate functions and order."""
        policy, mode = self.config.policy, self.config.geometries
        if mode == "any":
            candidates = any_candidates(gpu, request)
        else:
            candidates = config_candidates(gpu, request, self.geometries(gpu).geometries, first_only=policy == "hami")
        if candidates:
            return GpuAnswer(min(candidates, key=Candidate.score))  # what decide() picks on one GPU
        reason = self.decide([gpu], request).reason
        return GpuAnswer(None, reason.removeprefix(f"no MIG instance for {request.describe()}: "))

    def replay(self, gpu: GpuState, uuid: str, memory_mib: int) -> Decision:
        """What the node agent will realize for a device the scheduler already wrote on a pod."""
        ref = MigSlotRef.parse(uuid)
        if ref is not None:
            return plan_slot(gpu, self.geometries(gpu), ref.geometry_index, ref.slot)
        return self.decide([gpu], Request(memory_mib=max(memory_mib, 1)))
