"""Which pod and container a kubelet Allocate is for. The request carries no pod identity.

HAMi mode: a HAMi-compatible scheduler marked the pod (`hami.io/bind-phase: allocating`) and wrote
the devices it chose in `hami.io/vgpu-devices-to-allocate`; the first container with a non-empty
entry is next. Standalone mode (default kube-scheduler only): the oldest pending pod on this node
whose next GPU container without a record asks for exactly as many `nvidia.com/gpu` as the call
has device IDs. The kubelet admits pods one at a time and the agent records each allocation
before it answers, so the next call never picks the same container twice.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

from hami_mig.agent.records import annotations_of, is_live, pod_records
from hami_mig.errors import InputError
from hami_mig.kube.annotations import (
    BIND_PHASE,
    DEVICES_TO_ALLOCATE,
    ContainerDevices,
    PodDevices,
    decode_pod_devices,
    next_pending_container,
)
from hami_mig.kube.resources import DEFAULT_NAMES, ResourceNames, container_request, gpu_containers

Mode = Literal["hami", "standalone"]


@dataclass(frozen=True)
class Target:
    """The container this Allocate serves, and what the scheduler chose for it (HAMi mode)."""

    pod: Any
    container: int
    mode: Mode
    chosen: ContainerDevices = ()

    @property
    def key(self) -> str:
        return f"{self.pod.metadata.namespace}/{self.pod.metadata.name}"


class NoTargetError(Exception):
    """No pod on this node is waiting for an allocation of this size."""


def _created(pod: Any) -> tuple[float, str]:
    ts = pod.metadata.creation_timestamp
    return (ts.timestamp() if ts is not None else 0.0, f"{pod.metadata.namespace}/{pod.metadata.name}")


@dataclass(frozen=True)
class BrokenPod:
    """A pod a HAMi scheduler is binding here whose `vgpu-devices-to-allocate` cannot be read."""

    pod: Any
    error: InputError

    @property
    def key(self) -> str:
        return f"{self.pod.metadata.namespace}/{self.pod.metadata.name}"

    @property
    def message(self) -> str:
        return f"pod {self.key} {self.error}"


def _binding(pods: Iterable[Any]) -> Iterator[tuple[Any, PodDevices | InputError]]:
    """Each live pod a HAMi scheduler marked `bind-phase: allocating`, with its decoded devices annotation,
    or the InputError that says why it cannot be read."""
    for pod in pods:
        ann = annotations_of(pod)
        if ann.get(BIND_PHASE) != "allocating" or not is_live(pod) or pod.metadata.deletion_timestamp:
            continue
        try:
            yield pod, decode_pod_devices(ann.get(DEVICES_TO_ALLOCATE, ""))
        except InputError as exc:
            yield pod, exc


def broken_hami_pods(pods: Iterable[Any]) -> list[BrokenPod]:
    """HAMi pods being bound here with a corrupt devices annotation: no Allocate can serve them."""
    return [BrokenPod(pod, devices) for pod, devices in _binding(pods) if isinstance(devices, InputError)]


def hami_target(pods: Iterable[Any], n_devices: int) -> Target | None:
    """The pod a HAMi scheduler is binding here, oldest first; pods with a corrupt annotation are skipped
    (`broken_hami_pods`: the agent fails them once, visibly), so they never block the other pods."""
    found: list[Target] = []
    for pod, devices in _binding(pods):
        if isinstance(devices, InputError):
            continue
        index = next_pending_container(devices)
        if index is None:
            continue
        found.append(Target(pod, index, "hami", devices[index]))
    if not found:
        return None
    found.sort(key=lambda t: (len(t.chosen) != n_devices, _created(t.pod)))
    return found[0]


def standalone_target(pods: Iterable[Any], n_devices: int, names: ResourceNames = DEFAULT_NAMES) -> Target | None:
    """The oldest pending pod on the node whose next unrecorded GPU container asks for `n_devices` GPUs."""
    candidates: list[Target] = []
    for pod in pods:
        ann = annotations_of(pod)
        if ann.get(BIND_PHASE) in ("allocating", "failed"):
            continue  # a HAMi scheduler owns this pod, or its bind failed: never served by a guess
        if getattr(pod.status, "phase", None) != "Pending" or pod.metadata.deletion_timestamp:
            continue
        done = pod_records(pod)
        try:
            pending = [i for i in gpu_containers(pod, names) if i not in done]
        except InputError:
            continue  # reported when this pod's own Allocate comes
        if not pending:
            continue
        index = pending[0]
        try:
            request = container_request(pod, index, names)
        except InputError:
            candidates.append(Target(pod, index, "standalone"))  # its Allocate reports the bad value
            continue
        if request is not None and request.count == n_devices:
            candidates.append(Target(pod, index, "standalone"))
    if not candidates:
        return None
    return min(candidates, key=lambda t: _created(t.pod))


def find_target(pods: list[Any], n_devices: int, names: ResourceNames = DEFAULT_NAMES) -> Target:
    target = hami_target(pods, n_devices) or standalone_target(pods, n_devices, names)
    if target is None:
        skipped = "".join(f"; skipped {b.message}" for b in broken_hami_pods(pods))
        raise NoTargetError(
            f"no pod on this node is waiting for {n_devices} nvidia.com/gpu device(s): neither a HAMi-scheduled pod "
            f"({BIND_PHASE}=allocating) nor a pending pod whose next GPU container asks for {n_devices}{skipped}"
        )
    return target
