"""Conversions between the plugin's dataclasses and the v1beta1 protobuf messages."""

from __future__ import annotations

from collections.abc import Iterable

from .allocator import ContainerAllocation
from .devices import Device
from .proto import api_pb2
from .protocol import HEALTHY, UNHEALTHY

# What the kubelet can see of a device; two lists with equal keys need no new ListAndWatch message.
WireKey = tuple[tuple[str, bool, int | None], ...]


def wire_key(devices: Iterable[Device]) -> WireKey:
    """The parts of a device list that reach the kubelet (group is plugin-internal)."""
    return tuple((d.id, d.healthy, d.numa_node) for d in devices)


def device_to_proto(device: Device) -> api_pb2.Device:
    """A Device as advertised in ListAndWatch."""
    message = api_pb2.Device(ID=device.id, health=HEALTHY if device.healthy else UNHEALTHY)
    if device.numa_node is not None:
        message.topology.nodes.add(ID=device.numa_node)
    return message


def list_and_watch_response(devices: Iterable[Device]) -> api_pb2.ListAndWatchResponse:
    """The full device list, as every ListAndWatch message must carry."""
    return api_pb2.ListAndWatchResponse(devices=[device_to_proto(d) for d in devices])


def allocation_to_proto(allocation: ContainerAllocation) -> api_pb2.ContainerAllocateResponse:
    """One container's allocation as the kubelet checkpoints it."""
    return api_pb2.ContainerAllocateResponse(
        envs=dict(allocation.envs),
        mounts=[
            api_pb2.Mount(container_path=m.container_path, host_path=m.host_path, read_only=m.read_only)
            for m in allocation.mounts
        ],
        devices=[
            api_pb2.DeviceSpec(container_path=d.container_path, host_path=d.host_path, permissions=d.permissions)
            for d in allocation.devices
        ],
        annotations=dict(allocation.annotations),
        cdi_devices=[api_pb2.CDIDevice(name=name) for name in allocation.cdi_devices],
    )
