"""Parse a simulated node spec like "A100-SXM4-80GB:2,H100-SXM5-80GB:1" and derive stable UUIDs from a seed."""

from __future__ import annotations

import hashlib
import uuid as uuidlib
from dataclasses import dataclass

from hami_mig.errors import InputError
from hami_mig.mig.catalogue import GpuModel, UnknownModelError, default_catalogue
from hami_mig.testing.nvmlsim.state import SimGpu, SimState

DEFAULT_SPEC = "A100-SXM4-80GB:2"
MIG_FLAGS = {"mig-on": (1, 1), "mig-off": (0, 0), "mig-pending": (0, 1)}


@dataclass(frozen=True)
class GpuGroup:
    """`count` GPUs of one catalogue model in one MIG mode."""

    model: GpuModel
    count: int
    flag: str = "mig-on"

    def canonical(self) -> str:
        tail = "" if self.flag == "mig-on" else f":{self.flag}"
        return f"{self.model.name}:{self.count}{tail}"


def parse_spec(spec: str, field: str = "--sim-gpus") -> list[GpuGroup]:
    """`MODEL[:COUNT[:mig-on|mig-off|mig-pending]]`, comma separated; models by exact catalogue name or alias."""
    groups: list[GpuGroup] = []
    parts = [p.strip() for p in spec.split(",")]
    if not spec.strip() or any(not p for p in parts):
        raise InputError(field, spec, "a list like 'A100-SXM4-80GB:2,H100-SXM5-80GB:1'")
    for part in parts:
        name, _, rest = part.partition(":")
        count_text, _, flag = rest.partition(":")
        try:
            model = default_catalogue().lookup(name.strip())
        except UnknownModelError as exc:
            raise InputError(field, name.strip(), f"unknown GPU model; known models: {', '.join(exc.known)}") from None
        try:
            count = int(count_text) if count_text.strip() else 1
        except ValueError:
            raise InputError(field, part, "the count after ':' must be a whole number") from None
        if not 1 <= count <= 16:
            raise InputError(field, part, "the count must be between 1 and 16")
        flag = flag.strip() or "mig-on"
        if flag not in MIG_FLAGS:
            raise InputError(field, part, f"the mode after the count must be one of {', '.join(MIG_FLAGS)}")
        groups.append(GpuGroup(model, count, flag))
    if sum(g.count for g in groups) > 16:
        raise InputError(field, spec, "at most 16 GPUs per simulated node")
    return groups


def canonical_spec(spec: str) -> str:
    return ",".join(g.canonical() for g in parse_spec(spec))


def stable_uuid(seed: int, *parts: object) -> str:
    digest = hashlib.sha256(":".join(map(str, ("hami-mig-sim", seed, *parts))).encode()).digest()
    return str(uuidlib.UUID(bytes=digest[:16], version=4))


def new_state(spec: str, seed: int = 0, gi_ids: str = "heap") -> SimState:
    """A fresh node: MIG on (unless flagged), no instances, UUIDs fixed by the seed."""
    if gi_ids not in ("heap", "lowest"):
        raise InputError("gi_ids", gi_ids, "heap or lowest")
    state = SimState(seed=seed, spec=canonical_spec(spec), gi_ids=gi_ids)
    for group in parse_spec(spec):
        for _ in range(group.count):
            index = len(state.gpus)
            current, pending = MIG_FLAGS[group.flag]
            state.gpus.append(SimGpu(index=index, uuid=f"GPU-{stable_uuid(seed, 'gpu', index)}",
                                     model=group.model.name, mig_current=current, mig_pending=pending,
                                     numa_node=index // 4))
    return state
