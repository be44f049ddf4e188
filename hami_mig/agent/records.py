"""Which pod container holds which MIG instance: hami-mig's own pod annotation, and the live holdings.

HAMi's annotations name GPUs and geometry slots, not MIG devices, so they cannot say which
instance a pod holds after a restart. hami-mig adds `hami-mig.io/instances` (JSON) next to them:
the agent rebuilds its whole state from NVML plus these annotations, with no local database.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hami_mig.agent.snapshot import Holder
from hami_mig.errors import InputError
from hami_mig.kube.annotations import DEVICES_ALLOCATED, PodDevices, decode_pod_devices

INSTANCES_ANNOTATION = "hami-mig.io/instances"
TERMINAL_PHASES = ("Succeeded", "Failed")


@dataclass(frozen=True)
class HeldInstance:
    """One MIG instance recorded on a pod for one of its containers."""

    gpu_uuid: str
    mig_uuid: str
    profile: str
    start: int
    memory_mib: int

    def to_json(self) -> dict[str, Any]:
        return {"gpu": self.gpu_uuid, "mig": self.mig_uuid, "profile": self.profile, "start": self.start,
                "memory_mib": self.memory_mib}


Records = dict[int, tuple[HeldInstance, ...]]


def encode_records(records: Mapping[int, Sequence[HeldInstance]]) -> str:
    return json.dumps({str(k): [h.to_json() for h in v] for k, v in sorted(records.items())},
                      separators=(",", ":"))


def decode_records(text: str | None) -> Records:
    """Parse the annotation; bad content raises InputError naming the annotation and the fragment."""
    if not text:
        return {}
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(INSTANCES_ANNOTATION, text[:80], f"JSON written by hami-mig ({exc.msg})") from None
    if not isinstance(doc, dict):
        raise InputError(INSTANCES_ANNOTATION, text[:80], "a JSON object keyed by container index")
    out: Records = {}
    for key, items in doc.items():
        if not (isinstance(key, str) and key.isdigit()) or not isinstance(items, list):
            raise InputError(INSTANCES_ANNOTATION, key, "container index keys with lists of instances")
        held: list[HeldInstance] = []
        for item in items:
            try:
                held.append(HeldInstance(str(item["gpu"]), str(item["mig"]), str(item["profile"]),
                                         int(item["start"]), int(item.get("memory_mib", 0))))
            except (KeyError, TypeError, ValueError):
                raise InputError(INSTANCES_ANNOTATION, item, "objects {gpu, mig, profile, start}") from None
        out[int(key)] = tuple(held)
    return out


def _meta(pod: Any) -> Any:
    return pod.metadata


def annotations_of(pod: Any) -> dict[str, str]:
    return dict(_meta(pod).annotations or {})


def is_live(pod: Any) -> bool:
    """A pod whose containers may still run: not Succeeded/Failed. A terminating pod still holds its GPU."""
    phase = getattr(pod.status, "phase", None) if pod.status is not None else None
    return phase not in TERMINAL_PHASES


def pod_records(pod: Any) -> Records:
    """The pod's records, or {} when unreadable (the agent then protects every instance: `unreadable_records`)."""
    try:
        return decode_records(annotations_of(pod).get(INSTANCES_ANNOTATION))
    except InputError:
        return {}


def unreadable_records(pods: Iterable[Any]) -> list[str]:
    """Live pods whose record annotation cannot be read: which instance they hold is unknown."""
    bad: list[str] = []
    for pod in pods:
        if not is_live(pod):
            continue
        try:
            decode_records(annotations_of(pod).get(INSTANCES_ANNOTATION))
        except InputError:
            bad.append(f"{pod.metadata.namespace}/{pod.metadata.name}")
    return bad


def holdings(pods: Iterable[Any]) -> dict[str, tuple[Holder, HeldInstance]]:
    """MIG UUID -> (holder, record) for every instance a live pod holds, with the device HAMi's
    `vgpu-devices-allocated` records for it (HAMi's metrics are computed from that record)."""
    out: dict[str, tuple[Holder, HeldInstance]] = {}
    for pod in pods:
        if not is_live(pod):
            continue
        meta = _meta(pod)
        devices = _allocated(pod)
        for container, held in pod_records(pod).items():
            mine = list(devices[container]) if container < len(devices) else []
            for h in held:
                dev = next((d for d in mine if d.uuid.split("[", 1)[0] == h.gpu_uuid), None)
                if dev is not None:
                    mine.remove(dev)
                out[h.mig_uuid] = (Holder(meta.namespace, meta.name, container, meta.uid or "",
                                          dev.uuid if dev else "", dev.memory_mib if dev else None,
                                          dev.cores if dev else 0), h)
    return out


def _allocated(pod: Any) -> PodDevices:
    try:
        return decode_pod_devices(annotations_of(pod).get(DEVICES_ALLOCATED, ""), DEVICES_ALLOCATED)
    except InputError:
        return ()
