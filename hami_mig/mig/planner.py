"""The decision: which GPU and MIG instance serve a request, and the minimal NVML steps to get there.

Pure: it reads `GpuState`s and returns a `Decision`. Invariant, property-tested: no plan ever
destroys or moves an instance that is in use. See docs/planner.md for the policies with examples.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from hami_mig.mig.capacity import capacity_table, in_use_counts
from hami_mig.mig.catalogue import GpuModel, Profile
from hami_mig.mig.geometry import GpuGeometries, ResolvedGeometry
from hami_mig.mig.layout import Layouts, for_model, profile_mask
from hami_mig.mig.plan import Allocation, Decision, Operation
from hami_mig.mig.request import Request
from hami_mig.mig.state import GpuState, Instance

Policy = Literal["hami", "best-fit"]
GeometryMode = Literal["config", "any"]
POLICIES: tuple[Policy, ...] = ("hami", "best-fit")
GEOMETRY_MODES: tuple[GeometryMode, ...] = ("config", "any")

GeometryLookup = Callable[[GpuState], GpuGeometries]


@dataclass(frozen=True)
class Candidate:
    """One feasible way to serve the request on one GPU."""

    gpu: GpuState
    profile: Profile
    start: int
    reuse: Instance | None
    destroys: tuple[Instance, ...]
    geometry_index: int | None = None
    slot: int | None = None
    loss: int = 0  # slices of future room this placement takes away (capacity.py)

    @property
    def operations(self) -> int:
        return len(self.destroys) + (0 if self.reuse is not None else 1)

    def score(self) -> tuple[int, int, int, int, int, int]:
        """best-fit order: smallest covering memory, least future room lost, more compute for the same
        memory and room (SM slices never run out first), lowest GPU index, then on that GPU fewest NVML
        operations (reuse a free instance) and the lowest start."""
        return (self.profile.memory_mib, self.loss, -self.profile.compute_slices, self.gpu.index,
                self.operations, self.start)


# --------------------------------------------------------------------------- request semantics


def covers(profile: Profile, model: GpuModel, request: Request) -> bool:
    """Whether one instance of `profile` satisfies the request's memory on this model.

    gpumem: the profile's REAL memory must reach it. gpumem-percentage: the instance must own at
    least that share of the GPU's memory slices (3g.40gb = 4/8 = 50 %). Neither: the largest profile.
    """
    if request.memory_mib is not None:
        return profile.memory_mib >= request.memory_mib
    if request.memory_percent is not None:
        return profile.memory_slices * 100 >= request.memory_percent * model.memory_slices
    return profile.memory_mib >= model.largest.memory_mib


def core_share(profile: Profile, model: GpuModel) -> int:
    return profile.compute_slices * 100 // model.compute_slices


def cores_ok(request: Request, profile: Profile, model: GpuModel, configured: int = 0) -> bool:
    if not request.cores:
        return True
    # A config `core` value (HAMi's 98 for an A100-80GB 7g) never makes a slot look worse than the hardware.
    return max(configured, core_share(profile, model)) >= request.cores


def needed_mib(request: Request, model: GpuModel) -> int:
    """The request in MiB on this model, for messages."""
    if request.memory_mib is not None:
        return request.memory_mib
    if request.memory_percent is not None:
        return math.ceil(model.total_memory_mib * request.memory_percent / 100)
    return model.largest.memory_mib


# --------------------------------------------------------------------------- candidates on one GPU


def _overlapping_free(gpu: GpuState, lay: Layouts, m: int) -> tuple[Instance, ...]:
    return tuple(i for i in gpu.free() if lay.occupied([(i.profile, i.start)]) & m)


def _at(gpu: GpuState, lay: Layouts, fixed: int, profile: Profile, start: int, **where: int | None) -> Candidate:
    m = profile_mask(profile, start)
    reuse = next((i for i in gpu.free() if i.profile == profile.name and i.start == start), None)
    destroys = () if reuse is not None else _overlapping_free(gpu, lay, m)
    table = capacity_table(gpu.model)
    counts = in_use_counts(i.profile for i in gpu.in_use()) if table.counts_bind else ()
    loss = table.loss(fixed, counts, profile.name, m)
    return Candidate(gpu, profile, start, reuse, destroys, loss=loss, **where)


def geometry_fit(gpu: GpuState, geo: ResolvedGeometry) -> tuple[list[int] | None, dict[str, int]]:
    """Whether the GPU's in-use instances can all stay where they are inside this geometry.

    (indices of the geometry's slots they leave free, {}) when they can; (None, {profile: how many
    in-use instances of it lack a slot}) when the geometry has too few slots of their profiles;
    (None, {}) when it has the slots but its other slots cannot be placed around them."""
    taken: dict[str, int] = {}
    for inst in gpu.in_use():
        taken[inst.profile] = taken.get(inst.profile, 0) + 1
    free: list[int] = []
    for slot in geo.slots:
        name = slot.profile.name
        if taken.get(name, 0) > 0:
            taken[name] -= 1
        else:
            free.append(slot.index)
    missing = {p: n for p, n in taken.items() if n > 0}
    if missing:
        return None, missing
    lay = for_model(gpu.model)
    fixed = lay.occupied(i.key() for i in gpu.in_use())
    if not lay.realizable(fixed, [geo.slots[i].profile.name for i in free]):
        return None, {}
    return free, {}


FitKey = tuple[int, int, tuple[tuple[str, int], ...]]
_FITS: dict[FitKey, tuple[ResolvedGeometry, GpuModel, tuple[int, ...] | None]] = {}
FIT_MEMO_LIMIT = 100_000


def _geometry_fit(gpu: GpuState, geo: ResolvedGeometry) -> tuple[int, ...] | None:
    """The free slot indices of `geometry_fit`, or None when the geometry cannot hold the in-use instances.

    Memoised on (geometry, model, in-use placements): `hami` walks every GPU's geometries per request.
    """
    key = (id(geo), id(gpu.model), tuple(i.key() for i in gpu.in_use()))
    hit = _FITS.get(key)
    if hit is not None and hit[0] is geo and hit[1] is gpu.model:
        return hit[2]
    free = geometry_fit(gpu, geo)[0]
    if len(_FITS) >= FIT_MEMO_LIMIT:
        _FITS.clear()
    _FITS[key] = (geo, gpu.model, tuple(free) if free is not None else None)
    return _FITS[key][2]


def clear_memos() -> None:
    """Forget the memoised geometry fits (a benchmark measuring cold decisions calls this)."""
    _FITS.clear()


def _geometries_kept(gpu: GpuState, cand: Candidate, geometries: Sequence[ResolvedGeometry]) -> int:
    """How many configured geometries stay reachable once this candidate's instance is in use."""
    kept = [i for i in gpu.instances if i.in_use]
    after = gpu.with_instances([*kept, Instance(cand.profile.name, cand.start, True)])
    return sum(1 for geo in geometries if _geometry_fit(after, geo) is not None)


def config_candidates(
    gpu: GpuState, request: Request, geometries: Sequence[ResolvedGeometry], first_only: bool
) -> list[Candidate]:
    """Feasible slots in config order. With `first_only`, only the first covering slot (HAMi's walk)."""
    lay = for_model(gpu.model)
    fixed = lay.occupied(i.key() for i in gpu.in_use())
    out: list[Candidate] = []
    seen: set[tuple[str, int]] = set()
    useful = {p.name for p in gpu.model.plannable if covers(p, gpu.model, request)}
    for geo in geometries:
        if not useful.intersection(geo.profiles):
            continue  # no slot of this geometry could serve the request: skip the placement search
        free = _geometry_fit(gpu, geo)
        if free is None:
            continue
        kinds: set[tuple[str, int]] = set()
        for pos, idx in enumerate(free):
            slot = geo.slots[idx]
            if (slot.profile.name, slot.core) in kinds:
                continue  # an identical slot earlier in this geometry already gave every placement it could
            kinds.add((slot.profile.name, slot.core))
            if not covers(slot.profile, gpu.model, request):
                continue
            if not cores_ok(request, slot.profile, gpu.model, slot.core):
                continue
            rest = lay.sort_key([geo.slots[i].profile.name for j, i in enumerate(free) if j != pos])
            found: list[Candidate] = []
            for start in lay.free_starts(slot.profile.name, fixed):
                if (slot.profile.name, start) in seen:
                    continue
                m = profile_mask(slot.profile, start)
                if lay.realizable_sorted(fixed | m, rest):
                    found.append(_at(gpu, lay, fixed, slot.profile, start, geometry_index=geo.index, slot=idx))
            if first_only and found:
                # Reuse a free instance if it is one of the slot's valid placements, else fewest ops;
                # then the placement that keeps the most configured geometries possible.
                fewest = min(c.operations for c in found)
                found = [c for c in found if c.operations == fewest]
                if len(found) == 1:
                    return found
                return [min(found, key=lambda c: (-_geometries_kept(gpu, c, geometries), c.start))]
            for c in found:
                seen.add((c.profile.name, c.start))
            out += found
    return out


def any_candidates(gpu: GpuState, request: Request) -> list[Candidate]:
    """Every profile and placement the hardware allows around the in-use instances."""
    lay = for_model(gpu.model)
    in_use = gpu.in_use()
    fixed = lay.occupied(i.key() for i in in_use)
    out: list[Candidate] = []
    for profile in gpu.model.plannable:
        if not covers(profile, gpu.model, request) or not cores_ok(request, profile, gpu.model):
            continue
        for start in lay.free_starts(profile.name, fixed):
            cand = _at(gpu, lay, fixed, profile, start)
            gone = {d.key() for d in cand.destroys}
            kept = sum(1 for i in gpu.instances if i.profile == profile.name and i.key() not in gone)
            if cand.reuse is None and kept + 1 > profile.max_count:
                continue
            out.append(cand)
    return out


# --------------------------------------------------------------------------- the decision


def _why_not(gpu: GpuState, request: Request, geos: GpuGeometries | None, mode: GeometryMode) -> str:
    model = gpu.model
    head = f"GPU {gpu.index} ({model.name})"
    need = needed_mib(request, model)
    if mode == "config" and geos is not None and not geos.geometries:
        return f"{head}: no knownMigGeometries entry matches this model"
    covering = [p for p in model.plannable if covers(p, model, request)]
    if not covering:
        return f"{head}: needs {need} MiB; the largest profile is {model.largest.name} ({model.largest.memory_mib} MiB)"
    if not any(cores_ok(request, p, model) for p in covering):
        best = max(core_share(p, model) for p in covering)
        return f"{head}: needs {request.cores}% of the SMs; the profiles with {need} MiB or more offer at most {best}%"
    lay = for_model(model)
    fixed = lay.occupied(i.key() for i in gpu.in_use())
    placeable = [p for p in model.plannable if lay.free_starts(p.name, fixed)]
    busy = ", ".join(f"{i.profile}@{i.start}" for i in gpu.in_use()) or "none"
    largest = max(placeable, key=lambda p: p.memory_mib, default=None)
    biggest = f"{largest.name} ({largest.memory_mib} MiB)" if largest else "nothing"
    scope = "no configured geometry keeps the in-use instances in place and" if mode == "config" else "no placement"
    return (
        f"{head}: needs {need} MiB; {scope} offers a free instance that covers it "
        f"(in use: {busy}; largest profile still placeable: {biggest})"
    )


def _candidates(
    gpu: GpuState, request: Request, geos: GpuGeometries | None, policy: Policy, mode: GeometryMode
) -> list[Candidate]:
    if mode == "any":
        return any_candidates(gpu, request)
    geometries = geos.geometries if geos is not None else ()
    return config_candidates(gpu, request, geometries, first_only=policy == "hami")


def decide(
    gpus: Sequence[GpuState],
    request: Request,
    geometries: GeometryLookup | None = None,
    policy: Policy = "hami",
    mode: GeometryMode = "config",
) -> Decision:
    """Plan `request.count` instances on as many distinct GPUs.

    `hami`, config geometries: on each GPU HAMi's walk (the first configured geometry that fits, its
    first covering slot); the GPUs whose picks score best (`Candidate.score`) serve the request.
    `hami`, any geometry: the first GPUs in node order that fit, the best-scored placement on each.
    `best-fit`: the globally best candidate by `Candidate.score`, one GPU after another.
    """
    if policy not in POLICIES:
        raise ValueError(f"policy {policy!r}: use one of {', '.join(POLICIES)}")
    if mode not in GEOMETRY_MODES:
        raise ValueError(f"geometries {mode!r}: use one of {', '.join(GEOMETRY_MODES)}")
    if mode == "config" and geometries is None:
        raise ValueError("geometries='config' needs a geometry lookup")
    if request.count > len(gpus):
        return Decision(
            False,
            reason=f"asks for {request.count} instances on {request.count} distinct GPUs; "
            f"the node has {len(gpus)} GPU{'s' if len(gpus) != 1 else ''}",
        )
    geos: dict[int, GpuGeometries] = {}
    per_gpu: dict[int, list[Candidate]] = {}

    def geometries_of(gpu: GpuState) -> GpuGeometries | None:
        if mode != "config" or geometries is None:
            return None
        if gpu.index not in geos:
            geos[gpu.index] = geometries(gpu)
        return geos[gpu.index]

    def candidates(gpu: GpuState) -> list[Candidate]:  # lazily: `hami` over any layout stops at the first fits
        if gpu.index not in per_gpu:
            per_gpu[gpu.index] = _candidates(gpu, request, geometries_of(gpu), policy, mode)
        return per_gpu[gpu.index]

    chosen: list[Candidate] = []
    if not ranks_gpus(policy, mode):
        for gpu in gpus:
            if len(chosen) == request.count:
                break
            cands = candidates(gpu)
            if cands:
                chosen.append(min(cands, key=Candidate.score))
    else:
        # one pick per GPU: the best-scored candidate (under `hami` in config mode HAMi's walk yields only one)
        picks = (min(c, key=Candidate.score) for g in gpus if (c := candidates(g)))
        chosen = sorted(picks, key=Candidate.score)[: request.count]

    if len(chosen) < request.count:
        reasons = [_why_not(g, request, geometries_of(g), mode) for g in gpus if not candidates(g)]
        if len(reasons) > 3:  # an Event or log line stays readable on an 8-GPU node
            reasons = [*reasons[:3], f"and {len(reasons) - 3} more GPUs with no room either"]
        got = f"only {len(chosen)} of {request.count} GPUs can host it; " if request.count > 1 and chosen else ""
        return Decision(False, reason=f"no MIG instance for {request.describe()}: {got}" + "; ".join(reasons))
    return _decision(chosen)


def ranks_gpus(policy: Policy, mode: GeometryMode) -> bool:
    """Whether the GPUs serving a request are the best-scored ones (else the first ones in node order)."""
    return policy == "best-fit" or mode == "config"


def _decision(chosen: Sequence[Candidate]) -> Decision:
    allocations: list[Allocation] = []
    operations: list[Operation] = []
    notes: list[str] = []
    for c in sorted(chosen, key=lambda c: c.gpu.index):
        allocations.append(Allocation(
            gpu_index=c.gpu.index, gpu_uuid=c.gpu.uuid, profile=c.profile.name, start=c.start,
            memory_mib=c.profile.memory_mib, reuse=c.reuse is not None, geometry_index=c.geometry_index,
            slot=c.slot, uuid=c.reuse.uuid if c.reuse is not None else None,
        ))
        for d in c.destroys:
            operations.append(Operation("destroy", c.gpu.index, d.profile, d.start, c.gpu.uuid))
        if c.reuse is None:
            operations.append(Operation("create", c.gpu.index, c.profile.name, c.start, c.gpu.uuid))
        where = f" geometry {c.geometry_index} slot {c.slot}" if c.geometry_index is not None else ""
        action = "reuses the free instance" if c.reuse is not None else "creates"
        gone = f" after destroying {', '.join(f'{d.profile}@{d.start}' for d in c.destroys)}" if c.destroys else ""
        notes.append(f"GPU {c.gpu.index}:{where} {action} {c.profile.name}@{c.start}{gone}")
    return Decision(True, tuple(allocations), tuple(operations), notes=tuple(notes))


def plan_slot(gpu: GpuState, geometries: GpuGeometries, geometry_index: int, slot: int) -> Decision:
    """Realize one geometry slot chosen by a HAMi scheduler (`GPU-<uuid>[<geometry>-<slot>]`)."""
    geo = next((g for g in geometries.geometries if g.index == geometry_index), None)
    if geo is None:
        return Decision(False, reason=f"GPU {gpu.index}: geometry {geometry_index} is not configured "
                        f"(or not valid) for {gpu.model.name}")
    if not 0 <= slot < len(geo.slots):
        return Decision(False, reason=f"GPU {gpu.index}: geometry {geometry_index} has slots 0..{len(geo.slots) - 1}, "
                        f"not {slot}")
    free = _geometry_fit(gpu, geo)
    if free is None:
        busy = ", ".join(f"{i.profile}@{i.start}" for i in gpu.in_use())
        return Decision(False, reason=f"GPU {gpu.index}: geometry {geometry_index} ({geo.describe()}) cannot keep "
                        f"the in-use instances {busy} in place")
    want = geo.slots[slot].profile
    pos = next((j for j, i in enumerate(free) if geo.slots[i].profile.name == want.name), None)
    if pos is None:
        return Decision(False, reason=f"GPU {gpu.index}: every {want.name} slot of geometry {geometry_index} is in use")
    lay = for_model(gpu.model)
    fixed = lay.occupied(i.key() for i in gpu.in_use())
    rest = [geo.slots[i].profile.name for j, i in enumerate(free) if j != pos]
    found = [
        _at(gpu, lay, fixed, want, s, geometry_index=geometry_index, slot=slot)
        for s in lay.free_starts(want.name, fixed)
        if lay.realizable(fixed | profile_mask(want, s), rest)
    ]
    if not found:
        return Decision(False, reason=f"GPU {gpu.index}: no placement for {want.name} keeps geometry "
                        f"{geometry_index} realizable")
    return _decision([min(found, key=lambda c: (c.operations, c.start))])


def apply_decision(gpus: Sequence[GpuState], decision: Decision) -> list[GpuState]:
    """The GPUs as they are after the decision is carried out (allocated instances in use)."""
    out: list[GpuState] = []
    for gpu in gpus:
        instances = {i.key(): i for i in gpu.instances}
        for op in decision.operations:
            if op.gpu_index != gpu.index:
                continue
            if op.op == "destroy":
                instances.pop((op.profile, op.start), None)
            else:
                instances[(op.profile, op.start)] = Instance(op.profile, op.start)
        for a in decision.allocations:
            if a.gpu_index == gpu.index:
                prev = instances.get((a.profile, a.start))
                instances[(a.profile, a.start)] = Instance(a.profile, a.start, True, prev.uuid if prev else None)
        out.append(gpu.with_instances(instances.values()))
    return out
