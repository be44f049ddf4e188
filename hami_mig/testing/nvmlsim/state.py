"""The simulated node's whole state as plain data, so it round-trips through a JSON file between processes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

STATE_VERSION = 1


@dataclass
class SimCi:
    """A compute instance = a MIG device: its own UUID and the processes running on it."""

    serial: int
    id: int
    profile: int  # NVML_COMPUTE_INSTANCE_PROFILE_* (= the CI profile id)
    start: int
    size: int
    uuid: str
    processes: list[list[int]] = field(default_factory=list)  # [pid, used MiB]


@dataclass
class SimGi:
    """A GPU instance at a placement; `profile` is the GI profile enum."""

    serial: int
    id: int
    profile: int
    start: int
    cis: list[SimCi] = field(default_factory=list)


@dataclass
class SimGpu:
    """One physical GPU: catalogue model, MIG mode, faults that stick to it, and its instances."""

    index: int
    uuid: str
    model: str
    mig_current: int = 1
    mig_pending: int = 1
    numa_node: int | None = None
    lost: bool = False
    deny_processes: bool = False
    mig_index_holes: list[int] = field(default_factory=list)
    gis: list[SimGi] = field(default_factory=list)
    minor: int | None = None  # /dev/nvidia<minor>; None: same as the index
    gpu_processes: list[list[int]] = field(default_factory=list)  # [pid, used MiB] outside any MIG device
    name: str | None = None  # the name NVML reports, when not the catalogue model's (a model hami-mig does not know)
    mig_capable: bool = True  # False: nvmlDeviceGetMigMode answers NOT_SUPPORTED (a GPU without MIG)
    profile_drift: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per profile name, what this driver reports instead of the catalogue: memory_mib, max_count, starts, absent."""


def _pairs(rows: list[list[int]]) -> list[list[int]]:
    return [list(r) for r in rows]


def _gpu_json(gpu: SimGpu) -> dict[str, Any]:
    gis = [{**vars(gi), "cis": [{**vars(ci), "processes": _pairs(ci.processes)} for ci in gi.cis]} for gi in gpu.gis]
    return {**vars(gpu), "mig_index_holes": list(gpu.mig_index_holes), "gis": gis,
            "gpu_processes": _pairs(gpu.gpu_processes)}


@dataclass
class FailRule:
    """Fail the `nth` matching call (counted from when the rule was added) with NVML error `error`."""

    match: str
    nth: int
    error: int
    gpu: int | None = None
    seen: int = 0


@dataclass
class SimState:
    """Everything a second process needs to see the same GPUs."""

    seed: int
    spec: str
    gi_ids: str = "heap"
    next_serial: int = 1
    gpus: list[SimGpu] = field(default_factory=list)
    fail_rules: list[FailRule] = field(default_factory=list)
    version: int = STATE_VERSION

    def serial(self) -> int:
        value = self.next_serial
        self.next_serial += 1
        return value

    def to_json(self) -> dict[str, Any]:
        """Plain data, a copy (what `asdict` gives, built directly: the state file is written on every change)."""
        return {"seed": self.seed, "spec": self.spec, "gi_ids": self.gi_ids, "next_serial": self.next_serial,
                "gpus": [_gpu_json(g) for g in self.gpus], "fail_rules": [dict(vars(r)) for r in self.fail_rules],
                "version": self.version}

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> SimState:
        if raw.get("version") != STATE_VERSION:
            raise ValueError(f"simulator state version {raw.get('version')!r}, expected {STATE_VERSION}")
        gpus = [
            SimGpu(**{**g, "gis": [SimGi(**{**gi, "cis": [SimCi(**ci) for ci in gi["cis"]]}) for gi in g["gis"]]})
            for g in raw["gpus"]
        ]
        rules = [FailRule(**r) for r in raw.get("fail_rules", [])]
        return cls(seed=int(raw["seed"]), spec=str(raw["spec"]), gi_ids=str(raw.get("gi_ids", "heap")),
                   next_serial=int(raw["next_serial"]), gpus=gpus, fail_rules=rules)
