"""Checks on what the kubelet sends, so a bad request fails with a message that names the culprit."""

from __future__ import annotations

from collections.abc import Mapping

from .allocator import FailedPreconditionError, InvalidRequestError
from .devices import Device
from .proto import api_pb2

_SHOWN_IDS = 8


def show_id(device_id: str) -> str:
    """A device ID quoted for an error message, cut short if absurdly long."""
    return repr(device_id if len(device_id) <= 80 else device_id[:77] + "...")


def validate_allocate_request(request: api_pb2.AllocateRequest, devices: Mapping[str, Device],
                              resource_name: str) -> list[list[str]]:
    """The device IDs of each container request, or an AllocationError naming what is wrong."""
    if not request.container_requests:
        raise InvalidRequestError("AllocateRequest.container_requests is empty; expected one entry per container")
    total = sum(len(c.devices_ids) for c in request.container_requests)
    if total > len(devices):
        raise InvalidRequestError(
            f"AllocateRequest asks for {total} devices but {resource_name} advertises only {len(devices)}"
        )
    seen: dict[str, int] = {}
    result: list[list[str]] = []
    for index, container in enumerate(request.container_requests):
        ids = list(container.devices_ids)
        if not ids:
            raise InvalidRequestError(f"container_requests[{index}].devices_ids is empty; name at least one device")
        for device_id in ids:
            if device_id in seen:
                where = (f"twice in container_requests[{index}]" if seen[device_id] == index else
                         f"in container_requests[{seen[device_id]}] and [{index}]")
                raise InvalidRequestError(
                    f"duplicate device ID {show_id(device_id)}: it appears {where}; each device is allocated once"
                )
            seen[device_id] = index
            device = devices.get(device_id)
            if device is None:
                raise InvalidRequestError(
                    f"unknown device ID {show_id(device_id)} in container_requests[{index}]; {resource_name} "
                    f"advertises {_describe(devices)}"
                )
            if not device.healthy:
                raise FailedPreconditionError(
                    f"device {show_id(device_id)} of {resource_name} is Unhealthy; the kubelet will pick "
                    "another once it sees the updated device list"
                )
        result.append(ids)
    return result


def _describe(devices: Mapping[str, Device]) -> str:
    if not devices:
        return "no devices"
    names = ", ".join(sorted(devices)[:_SHOWN_IDS])
    more = f", ... ({len(devices)} in all)" if len(devices) > _SHOWN_IDS else ""
    return f"{names}{more}"
