"""Why the planner chose what it chose, or why nothing fits: per GPU, per geometry (or profile), in words.

Pure, like the planner it explains: `explain` runs the planner's own candidate functions one
geometry at a time and says for each whether it was accepted and why not; `failure_reason` is the
one line an Allocate error and its Event carry ("needs 19968 MiB; largest placeable profile on GPU 0
(GPU-…) is 1g.10gb (9728 MiB) because 3g.40gb@0 and 2g.20gb@4 are in use").
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from hami_mig.mig.catalogue import GpuModel, Profile
from hami_mig.mig.geometry import GpuGeometries, ResolvedGeometry
from hami_mig.mig.layout import for_model
from hami_mig.mig.plan import Allocation, Decision
from hami_mig.mig.planner import (
    GeometryLookup,
    GeometryMode,
    Policy,
    any_candidates,
    config_candidates,
    core_share,
    cores_ok,
    covers,
    decide,
    geometry_fit,
    needed_mib,
)
from hami_mig.mig.request import Request
from hami_mig.mig.state import GpuState, Instance


@dataclass(frozen=True)
class Verdict:
    """One geometry (config mode) or profile (any mode) considered on one GPU."""

    label: str
    accepted: bool
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {"considered": self.label, "accepted": self.accepted, "reason": self.reason}


@dataclass(frozen=True)
class GpuExplanation:
    index: int
    uuid: str
    model: str
    in_use: tuple[str, ...]
    free: tuple[str, ...]
    source: str  # which config entry gave the geometries ("" in any mode)
    verdicts: tuple[Verdict, ...]
    chosen: str = ""
    failure: str = ""
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"index": self.index, "uuid": self.uuid, "model": self.model, "in_use": list(self.in_use),
                "free": list(self.free), "geometries_from": self.source or None,
                "considered": [v.to_json() for v in self.verdicts], "chosen": self.chosen or None,
                "failure": self.failure or None, "note": self.note or None}


@dataclass(frozen=True)
class Explanation:
    request: Request
    policy: Policy
    mode: GeometryMode
    decision: Decision
    gpus: tuple[GpuExplanation, ...]
    reason: str = ""  # the whole request's failure, when it does not fit

    def lines(self) -> list[str]:
        out = [f"request: {self.request.describe()} (policy {self.policy}, geometries {self.mode})"]
        for g in self.gpus:
            out.append(f"GPU {g.index} {g.uuid} {g.model}")
            out.append(f"  in use: {', '.join(g.in_use) or 'none'}; free: {', '.join(g.free) or 'none'}")
            if g.source:
                out.append(f"  geometries from {g.source}")
            for v in g.verdicts:
                out.append(f"  {'+' if v.accepted else '-'} {v.label}: {v.reason}")
            if g.note:
                out.append(f"  {g.note}")
            if g.chosen:
                out.append(f"  chosen: {g.chosen}")
            elif g.failure:
                out.append(f"  cannot host it: {g.failure}")
        if self.decision.fits:
            out.append("result: " + "; ".join(self.decision.notes))
            ops = [f"{o.op} {o.profile}@{o.start} on GPU {o.gpu_index}" for o in self.decision.operations]
            out.append("NVML operations: " + (", ".join(ops) if ops else "none"))
        else:
            out.append(f"result: does not fit: {self.reason}")
        return out

    def to_json(self) -> dict[str, Any]:
        return {"request": self.request.describe(), "policy": self.policy, "geometries": self.mode,
                "fits": self.decision.fits, "reason": self.reason or None, "decision": self.decision.to_json(),
                "gpus": [g.to_json() for g in self.gpus]}


# --------------------------------------------------------------------------- words


def _at(i: Instance) -> str:
    return f"{i.profile}@{i.start}"


def _and(items: Sequence[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _mib(p: Profile) -> str:
    return f"{p.name} ({p.memory_mib} MiB)"


def needs(request: Request, model: GpuModel) -> str:
    """What the request needs on this model, in words with MiB."""
    cores = f" and >= {request.cores}% of the SMs" if request.cores else ""
    if request.memory_mib is not None:
        return f"needs {request.memory_mib} MiB{cores}"
    if request.memory_percent is not None:
        return f"needs {request.memory_percent}% of the GPU's memory ({needed_mib(request, model)} MiB){cores}"
    return f"needs a whole GPU ({_mib(model.largest)}){cores}"


def gpu_failure(gpu: GpuState, request: Request, geos: GpuGeometries | None, mode: GeometryMode) -> str:
    """One line: why this GPU cannot host the request, and what would have been needed."""
    model = gpu.model
    where = f"GPU {gpu.index} ({gpu.uuid})"
    need = needs(request, model)
    if mode == "config" and (geos is None or not geos.geometries):
        bad = f" ({len(geos.skipped)} configured geometries are invalid for it)" if geos and geos.skipped else ""
        return f"{where}: no knownMigGeometries entry matches {model.name}{bad}; {need}"
    covering = [p for p in model.plannable if covers(p, model, request)]
    if not covering:
        return f"{need}; {where}: the largest profile is {_mib(model.largest)}"
    with_cores = [p for p in covering if cores_ok(request, p, model)]
    if not with_cores:
        best = max(covering, key=lambda p: p.compute_slices)
        return f"{need}; on {where} the profiles that big offer at most {core_share(best, model)}% of the SMs"
    lay = for_model(model)
    in_use = gpu.in_use()
    fixed = lay.occupied(i.key() for i in in_use)
    counts = {p.name: sum(1 for i in in_use if i.profile == p.name) for p in model.plannable}
    placeable = [p for p in model.plannable if lay.capacity(fixed, p.name, counts[p.name]) > 0]
    busy = [_at(i) for i in in_use]
    verb = "is" if len(busy) == 1 else "are"
    fitting = [p for p in with_cores if p in placeable]
    if not fitting:
        if not placeable:
            return f"{need}; nothing can be placed on {where} because {_and(busy)} {verb} in use"
        largest = max(placeable, key=lambda p: (p.memory_mib, p.compute_slices))
        return f"{need}; largest placeable profile on {where} is {_mib(largest)} because {_and(busy)} {verb} in use"
    best = min(fitting, key=lambda p: p.memory_mib)
    beside = f" beside the in-use {_and(busy)}" if busy else ""
    return (f"{need}; {where} could place {best.name}{beside}, but no configured geometry (knownMigGeometries) "
            "keeps the in-use instances in place with a free slot that covers it (--geometries any would allow it)")


def _candidates_exist(gpu: GpuState, request: Request, geos: GpuGeometries | None, mode: GeometryMode) -> bool:
    if mode == "any":
        return bool(any_candidates(gpu, request))
    return bool(config_candidates(gpu, request, geos.geometries if geos else (), first_only=True))


def failure_reason(gpus: Sequence[GpuState], request: Request, geometries: GeometryLookup | None,
                   mode: GeometryMode = "config") -> str:
    """The one-line reason a request does not fit on these GPUs (for Allocate errors and Events)."""
    if request.count > len(gpus):
        return (f"asks for {request.count} instances on {request.count} distinct GPUs; the node has {len(gpus)} "
                f"GPU{'s' if len(gpus) != 1 else ''}")
    geos = {g.index: geometries(g) for g in gpus} if geometries is not None and mode == "config" else {}
    hosts = [g for g in gpus if _candidates_exist(g, request, geos.get(g.index), mode)]
    reasons = [gpu_failure(g, request, geos.get(g.index), mode) for g in gpus if g not in hosts]
    if len(reasons) > 3:  # an Event or log line stays readable on an 8-GPU node
        reasons = [*reasons[:3], f"and {len(reasons) - 3} more GPUs with no room either"]
    got = f"only {len(hosts)} of {request.count} GPUs can host it; " if request.count > 1 and hosts else ""
    return f"no MIG instance for {request.describe()}: {got}" + "; ".join(reasons)


# --------------------------------------------------------------------------- per geometry / per profile


def _fit_problem(gpu: GpuState, geo: ResolvedGeometry) -> tuple[str, list[int]]:
    """("", free slot indices) when the in-use instances can stay in place inside `geo`, else the reason."""
    free, missing = geometry_fit(gpu, geo)
    if free is not None:
        return "", free
    if missing:
        return f"no slot for the in-use {_and([f'{n}x {p}' if n > 1 else p for p, n in missing.items()])}", []
    return f"its other slots cannot be placed around the in-use {_and([_at(i) for i in gpu.in_use()])}", []


def _describe_free(geo: ResolvedGeometry, free: Sequence[int]) -> str:
    counts: dict[str, int] = {}
    for i in free:
        p = geo.slots[i].profile
        key = _mib(p)
        counts[key] = counts.get(key, 0) + 1
    return ", ".join(f"{n}x {k}" for k, n in counts.items()) or "none"


def _geometry_verdict(gpu: GpuState, request: Request, geo: ResolvedGeometry) -> Verdict:
    label = f"geometry {geo.index} ({geo.describe()})"
    problem, free = _fit_problem(gpu, geo)
    if problem:
        return Verdict(label, False, problem)
    need = needs(request, gpu.model)
    covering = [i for i in free if covers(geo.slots[i].profile, gpu.model, request)]
    if not covering:
        return Verdict(label, False, f"{need}; no free slot covers it (free slots: {_describe_free(geo, free)})")
    if not any(cores_ok(request, geo.slots[i].profile, gpu.model, geo.slots[i].core) for i in covering):
        return Verdict(label, False, f"the free slots that cover it offer less than {request.cores}% of the SMs")
    cands = config_candidates(gpu, request, [geo], first_only=False)
    if not cands:
        names = _and(sorted({geo.slots[i].profile.name for i in covering}))
        return Verdict(label, False, f"no placement of {names} keeps the rest of this geometry placeable")
    shown = [f"slot {c.slot} {c.profile.name}@{c.start}"
             + (" (reuse free instance)" if c.reuse is not None else "")
             + (f" (destroys {', '.join(_at(d) for d in c.destroys)})" if c.destroys else "")
             for c in cands[:6]]
    return Verdict(label, True, "fits: " + "; ".join(shown) + (f" and {len(cands) - 6} more" if len(cands) > 6 else ""))


def _profile_verdicts(gpu: GpuState, request: Request) -> list[Verdict]:
    model = gpu.model
    lay = for_model(model)
    fixed = lay.occupied(i.key() for i in gpu.in_use())
    cands = any_candidates(gpu, request)
    out: list[Verdict] = []
    for p in model.plannable:
        label = f"profile {_mib(p)}"
        if not covers(p, model, request):
            out.append(Verdict(label, False, f"too small ({needs(request, model)})"))
        elif not cores_ok(request, p, model):
            out.append(Verdict(label, False, f"{core_share(p, model)}% of the SMs < {request.cores}%"))
        elif not lay.free_starts(p.name, fixed):
            busy = _and([_at(i) for i in gpu.in_use()])
            out.append(Verdict(label, False, f"no free placement: every start overlaps the in-use {busy}"))
        else:
            mine = [c for c in cands if c.profile.name == p.name]
            if not mine:
                out.append(Verdict(label, False, f"the GPU already has the most {p.name} instances it allows"))
                continue
            starts = ", ".join(f"@{c.start}" + (" (reuse)" if c.reuse is not None else "") for c in mine)
            out.append(Verdict(label, True, f"fits at {starts}"))
    return out


def _chosen(a: Allocation, decision: Decision) -> str:
    where = f"geometry {a.geometry_index} slot {a.slot}: " if a.geometry_index is not None else ""
    gone = [f"{o.profile}@{o.start}" for o in decision.operations if o.gpu_index == a.gpu_index and o.op == "destroy"]
    action = "reuses the free instance" if a.reuse else "creates"
    after = f" after destroying the free {_and(gone)}" if gone else ""
    return f"{where}{action} {a.profile}@{a.start} ({a.memory_mib} MiB){after}"


def explain(gpus: Sequence[GpuState], request: Request, geometries: GeometryLookup | None = None,
            policy: Policy = "hami", mode: GeometryMode = "config") -> Explanation:
    """The planner's decision with, per GPU, every geometry (or profile) considered and why."""
    decision = decide(gpus, request, geometries, policy=policy, mode=mode)
    chosen = {a.gpu_index: a for a in decision.allocations}
    reason = "" if decision.fits else failure_reason(gpus, request, geometries, mode)
    out: list[GpuExplanation] = []
    for gpu in gpus:
        geos = geometries(gpu) if geometries is not None and mode == "config" else None
        verdicts: list[Verdict] = []
        source = ""
        if mode == "config" and geos is not None:
            if geos.rule is not None:
                source = f"knownMigGeometries[{geos.rule}] (models entry {geos.matched_model!r})"
            ranked = [(g.index, _geometry_verdict(gpu, request, g)) for g in geos.geometries]
            ranked += [_skipped_verdict(s) for s in geos.skipped]
            verdicts = [v for _i, v in sorted(ranked, key=lambda r: r[0])]
        elif mode == "any":
            verdicts = _profile_verdicts(gpu, request)
        note = ""
        a = chosen.get(gpu.index)
        hosts = any(v.accepted for v in verdicts)
        if a is None and hosts and decision.fits:
            note = (f"not used: the request is served by GPU {_and([str(i) for i in sorted(chosen)])}"
                    if policy == "hami" else "not used: another GPU scored better (best-fit)")
        elif a is not None and policy == "hami" and mode == "config":
            note = f"first fit: geometry {a.geometry_index} is the first configured geometry that fits"
        elif a is not None and policy == "best-fit":
            note = "best-fit: the smallest covering profile, then the placement that loses the least room"
        failure = "" if hosts else gpu_failure(gpu, request, geos, mode)
        out.append(GpuExplanation(
            index=gpu.index, uuid=gpu.uuid, model=gpu.model.name, in_use=tuple(_at(i) for i in gpu.in_use()),
            free=tuple(_at(i) for i in gpu.free()), source=source, verdicts=tuple(verdicts),
            chosen=_chosen(a, decision) if a is not None else "", failure=failure, note=note,
        ))
    return Explanation(request, policy, mode, decision, tuple(out), reason)


def _skipped_verdict(text: str) -> tuple[int, Verdict]:
    """A geometry the config names but this GPU cannot realize (`knownMigGeometries[r].allowedGeometries[g]: …`)."""
    found = re.search(r"allowedGeometries\[(\d+)\]", text)
    index = int(found.group(1)) if found else 1 << 30
    why = text.split(": ", 1)[1] if ": " in text else text
    return index, Verdict(f"geometry {index}" if found else "geometry", False, f"invalid for this GPU: {why}")
