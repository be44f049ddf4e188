"""What the plugin advertises: devices, and the sources that tell ListAndWatch when they change."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from .protocol import MAX_DEVICE_ID_LENGTH

logger = logging.getLogger(__name__)

Unsubscribe = Callable[[], None]


class DeviceError(ValueError):
    """A device or device list the kubelet would misread."""


@dataclass(frozen=True)
class Device:
    """One schedulable unit of the extended resource, as the kubelet sees it.

    ``group`` names the physical thing the device lives on (e.g. a GPU UUID) so preferred allocation
    can pack; an empty group means the device stands alone. ``numa_node`` is advertised as topology.
    """

    id: str
    healthy: bool = True
    numa_node: int | None = None
    group: str = ""

    def __post_init__(self) -> None:
        if not self.id or len(self.id) > MAX_DEVICE_ID_LENGTH:
            raise DeviceError(f"device ID {self.id!r} must be 1 to {MAX_DEVICE_ID_LENGTH} characters")
        if not self.id.isprintable() or any(c.isspace() for c in self.id):
            raise DeviceError(f"device ID {self.id!r} must be printable without whitespace")
        if self.numa_node is not None and self.numa_node < 0:
            raise DeviceError(f"device {self.id!r}: numa_node {self.numa_node} must be >= 0 or None")


def check_unique(devices: Iterable[Device]) -> tuple[Device, ...]:
    """Returns the devices as a tuple, raising DeviceError on a repeated ID (the kubelet keys by ID)."""
    result = tuple(devices)
    seen: set[str] = set()
    for device in result:
        if device.id in seen:
            raise DeviceError(f"device ID {device.id!r} appears more than once in the device list")
        seen.add(device.id)
    return result


class DeviceSource(Protocol):
    """Where the plugin reads the devices to advertise, and learns that they changed."""

    def devices(self) -> Sequence[Device]:
        """The current full device list; called often, must be cheap and thread-safe."""
        ...

    def subscribe(self, callback: Callable[[], None]) -> Unsubscribe:
        """Calls ``callback`` (from any thread, no arguments) after each change; returns an unsubscribe."""
        ...


class StaticDeviceSource:
    """A device list that never changes."""

    def __init__(self, devices: Iterable[Device]) -> None:
        self._devices = check_unique(devices)

    def devices(self) -> tuple[Device, ...]:
        """The fixed device list."""
        return self._devices

    def subscribe(self, callback: Callable[[], None]) -> Unsubscribe:
        """Nothing ever changes, so the callback is never called."""
        return _noop


class MutableDeviceSource:
    """A thread-safe in-memory device list whose updates wake every ListAndWatch stream."""

    def __init__(self, devices: Iterable[Device] = ()) -> None:
        self._lock = threading.Lock()
        self._devices = check_unique(devices)
        self._subscribers: dict[int, Callable[[], None]] = {}
        self._next_token = 0

    def devices(self) -> tuple[Device, ...]:
        """The current device list."""
        with self._lock:
            return self._devices

    def set_devices(self, devices: Iterable[Device]) -> bool:
        """Replaces the list; notifies subscribers and returns True if it differs from the old one."""
        new = check_unique(devices)
        with self._lock:
            changed = new != self._devices
            self._devices = new
        if changed:
            self._notify()
        return changed

    def set_health(self, device_id: str, healthy: bool) -> bool:
        """Flips one device's health; returns True if that changed anything."""
        with self._lock:
            current = {device.id: device for device in self._devices}
            if device_id not in current:
                raise DeviceError(f"unknown device ID {device_id!r}")
            if current[device_id].healthy == healthy:
                return False
            self._devices = tuple(
                replace(device, healthy=healthy) if device.id == device_id else device for device in self._devices
            )
        self._notify()
        return True

    def subscribe(self, callback: Callable[[], None]) -> Unsubscribe:
        """Registers ``callback`` for every later change."""
        with self._lock:
            token = self._next_token
            self._next_token += 1
            self._subscribers[token] = callback

        def unsubscribe() -> None:
            with self._lock:
                self._subscribers.pop(token, None)

        return unsubscribe

    @property
    def subscriber_count(self) -> int:
        """How many callbacks are registered; lets tests see that closed streams let go."""
        with self._lock:
            return len(self._subscribers)

    def _notify(self) -> None:
        with self._lock:
            callbacks = list(self._subscribers.values())
        for callback in callbacks:
            try:
                callback()
            except Exception:
                logger.exception("device change subscriber %r failed", callback)


def _noop() -> None:
    return None
