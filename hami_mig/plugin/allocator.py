"""The contract between the generic plugin and whatever decides what a container gets."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar, Protocol, runtime_checkable

import grpc

_CDI_NAME = re.compile(
    r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?/[A-Za-z0-9]([-A-Za-z0-9_]*[A-Za-z0-9])?"
    r"=[A-Za-z0-9]([-A-Za-z0-9_.:]*[A-Za-z0-9])?$"
)


@dataclass(frozen=True)
class Mount:
    """A host path bind-mounted into the container."""

    container_path: str
    host_path: str
    read_only: bool = False


@dataclass(frozen=True)
class DeviceSpec:
    """A device node exposed in the container; ``permissions`` combines r, w and m."""

    container_path: str
    host_path: str
    permissions: str = "rw"

    def __post_init__(self) -> None:
        if not self.permissions or set(self.permissions) - set("rwm") or len(set(self.permissions)) != len(
            self.permissions
        ):
            raise ValueError(f"DeviceSpec permissions {self.permissions!r} must combine 'r', 'w' and 'm'")


@dataclass(frozen=True)
class ContainerAllocation:
    """What one container receives for its devices; the kubelet checkpoints and replays it."""

    envs: Mapping[str, str] = field(default_factory=dict)
    mounts: tuple[Mount, ...] = ()
    devices: tuple[DeviceSpec, ...] = ()
    annotations: Mapping[str, str] = field(default_factory=dict)
    cdi_devices: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in self.cdi_devices:
            if not _CDI_NAME.match(name):
                raise ValueError(f"CDI device {name!r} must be fully qualified: 'vendor.com/class=name'")


class Allocator(Protocol):
    """Turns the device IDs the kubelet picked for one container into what the container gets."""

    def allocate(self, device_ids: Sequence[str]) -> ContainerAllocation:
        """Called from a worker thread; raise an AllocationError subclass to fail with a given code."""
        ...


@runtime_checkable
class PreferenceProvider(Protocol):
    """Optional allocator hook that overrides the default preferred-allocation policy."""

    def preferred(self, available: Sequence[str], must_include: Sequence[str], size: int) -> Sequence[str] | None:
        """Device IDs to suggest, or None to let the default packing policy decide."""
        ...


class AllocationError(Exception):
    """Allocate failed; the message reaches the user through the pod's events, so make it actionable."""

    code: ClassVar[grpc.StatusCode] = grpc.StatusCode.INTERNAL


class InvalidRequestError(AllocationError):
    """The request itself is wrong (unknown, duplicate or missing device IDs)."""

    code = grpc.StatusCode.INVALID_ARGUMENT


class UnavailableError(AllocationError):
    """A transient problem; the kubelet retries admission later."""

    code = grpc.StatusCode.UNAVAILABLE


class ResourceExhaustedError(AllocationError):
    """Not enough capacity to satisfy the request right now."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class FailedPreconditionError(AllocationError):
    """The system is not in a state that allows this allocation (e.g. a device went unhealthy)."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class DeadlineExceededError(AllocationError):
    """The allocation took too long and was abandoned."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED


class InternalAllocationError(AllocationError):
    """A bug or unexpected failure inside the allocator."""

    code = grpc.StatusCode.INTERNAL
