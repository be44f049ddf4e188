"""Allocate, GetPreferredAllocation, options and PreStartContainer over gRPC, bad input included."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import grpc
import pytest

from hami_mig.plugin import (
    AllocationError,
    ContainerAllocation,
    DeadlineExceededError,
    FailedPreconditionError,
    InternalAllocationError,
    InvalidRequestError,
    MutableDeviceSource,
    ResourceExhaustedError,
    UnavailableError,
)
from hami_mig.plugin.proto import api_pb2
from hami_mig.plugin.protocol import unix_address
from hami_mig.plugin.rpc import DevicePluginClient
from hami_mig.testing.fake_kubelet import FakeKubelet

from .conftest import RESOURCE, EchoAllocator, ServerFactory, make_devices


def allocate_error(kubelet: FakeKubelet, request: api_pb2.AllocateRequest) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        kubelet.client(RESOURCE).allocate(request, timeout=5)
    return info.value


def containers(*groups: Sequence[str]) -> api_pb2.AllocateRequest:
    return api_pb2.AllocateRequest(
        container_requests=[api_pb2.ContainerAllocateRequest(devices_ids=list(g)) for g in groups])


def test_allocate_returns_the_allocators_answer(kubelet: FakeKubelet, make_server: ServerFactory) -> None:
    allocator = EchoAllocator()
    make_server(allocator=allocator)
    kubelet.wait_for_registration(RESOURCE, 5)
    response = kubelet.allocate(RESOURCE, ["d1", "d0"], timeout=5)
    (container,) = response.container_responses
    assert dict(container.envs) == {"VISIBLE_DEVICES": "d1,d0"}
    assert dict(container.annotations) == {"example.com/devices": "d1,d0"}
    assert [(m.container_path, m.host_path, m.read_only) for m in container.mounts] == [
        ("/usr/lib/x", "/host/lib/x", True)]
    assert [(d.container_path, d.permissions) for d in container.devices] == [("/dev/d1", "rw"), ("/dev/d0", "rw")]
    assert [c.name for c in container.cdi_devices] == ["example.com/gpu=d1", "example.com/gpu=d0"]
    assert allocator.calls == [["d1", "d0"]]


def test_several_containers_in_one_request(kubelet: FakeKubelet, make_server: ServerFactory) -> None:
    make_server()
    kubelet.wait_for_registration(RESOURCE, 5)
    response = kubelet.client(RESOURCE).allocate(containers(["d0"], ["d2", "d3"]), timeout=5)
    assert [dict(c.envs)["VISIBLE_DEVICES"] for c in response.container_responses] == ["d0", "d2,d3"]


@pytest.mark.parametrize(("request_ids", "needle"), [
    ([], "container_requests is empty"),
    ([[]], "container_requests[0].devices_ids is empty"),
    ([["d0"], []], "container_requests[1].devices_ids is empty"),
    ([["d0", "nope"]], "unknown device ID 'nope' in container_requests[0]"),
    ([["d1", "d1"]], "duplicate device ID 'd1': it appears twice in container_requests[0]"),
    ([["d1"], ["d2", "d1"]], "duplicate device ID 'd1': it appears in container_requests[0] and [1]"),
    ([["d0", "d1", "d2", "d3", "d4"]], "asks for 5 devices but example.com/gpu advertises only 4"),
    ([["x" * 500]], "unknown device ID 'xxxxx"),
])
def test_bad_requests_are_invalid_argument_naming_the_culprit(
        kubelet: FakeKubelet, make_server: ServerFactory, request_ids: list[list[str]], needle: str) -> None:
    allocator = EchoAllocator()
    make_server(allocator=allocator)
    kubelet.wait_for_registration(RESOURCE, 5)
    error = allocate_error(kubelet, containers(*request_ids))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert needle in (error.details() or "")
    assert allocator.calls == []
    assert kubelet.allocate(RESOURCE, ["d0"], timeout=5)  # the server lives on


def test_unhealthy_device_is_failed_precondition(kubelet: FakeKubelet, make_server: ServerFactory) -> None:
    source = MutableDeviceSource(make_devices(2))
    make_server(source)
    kubelet.wait_for_registration(RESOURCE, 5)
    source.set_health("d1", False)
    error = allocate_error(kubelet, containers(["d0", "d1"]))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "device 'd1' of example.com/gpu is Unhealthy" in (error.details() or "")


class FailingAllocator:
    def __init__(self, error: Exception) -> None:
        self.error = error

    def allocate(self, device_ids: Sequence[str]) -> ContainerAllocation:
        raise self.error


@pytest.mark.parametrize(("error", "code"), [
    (InvalidRequestError("pod asks for 2 but got 1"), grpc.StatusCode.INVALID_ARGUMENT),
    (UnavailableError("NVML busy, retry"), grpc.StatusCode.UNAVAILABLE),
    (ResourceExhaustedError("no MIG slice of 10gb free on GPU-1"), grpc.StatusCode.RESOURCE_EXHAUSTED),
    (FailedPreconditionError("GPU-1 is not in MIG mode"), grpc.StatusCode.FAILED_PRECONDITION),
    (DeadlineExceededError("reshape took 30 s"), grpc.StatusCode.DEADLINE_EXCEEDED),
    (InternalAllocationError("bug"), grpc.StatusCode.INTERNAL),
    (AllocationError("base class"), grpc.StatusCode.INTERNAL),
])
def test_allocator_errors_map_to_status_codes(kubelet: FakeKubelet, make_server: ServerFactory,
                                              error: AllocationError, code: grpc.StatusCode) -> None:
    make_server(allocator=FailingAllocator(error))
    kubelet.wait_for_registration(RESOURCE, 5)
    rpc_error = allocate_error(kubelet, containers(["d0"]))
    assert rpc_error.code() == code and rpc_error.details() == str(error)


def test_unexpected_allocator_crash_is_internal_with_context(kubelet: FakeKubelet, make_server: ServerFactory) -> None:
    make_server(allocator=FailingAllocator(KeyError("GPU-7")))
    kubelet.wait_for_registration(RESOURCE, 5)
    error = allocate_error(kubelet, containers(["d3"]))
    assert error.code() == grpc.StatusCode.INTERNAL
    details = error.details() or ""
    assert "['d3']" in details and "KeyError" in details and "GPU-7" in details


def test_allocator_returning_garbage_is_internal(kubelet: FakeKubelet, make_server: ServerFactory) -> None:
    class Garbage:
        def allocate(self, device_ids: Sequence[str]) -> ContainerAllocation:
            return {"envs": {}}  # type: ignore[return-value]

    make_server(allocator=Garbage())
    kubelet.wait_for_registration(RESOURCE, 5)
    error = allocate_error(kubelet, containers(["d0"]))
    assert error.code() == grpc.StatusCode.INTERNAL and "not ContainerAllocation" in (error.details() or "")


def test_allocation_values_validate_themselves() -> None:
    from hami_mig.plugin import DeviceSpec

    with pytest.raises(ValueError, match="fully qualified"):
        ContainerAllocation(cdi_devices=("gpu0",))
    assert ContainerAllocation(cdi_devices=("nvidia.com/gpu=MIG-1a2b:0",))
    with pytest.raises(ValueError, match="permissions"):
        DeviceSpec("/dev/x", "/dev/x", "rx")


def test_options_and_pre_start(kubelet: FakeKubelet, make_server: ServerFactory) -> None:
    make_server()
    kubelet.wait_for_registration(RESOURCE, 5)
    options = kubelet.client(RESOURCE).get_device_plugin_options(timeout=5)
    assert options.get_preferred_allocation_available and not options.pre_start_required
    assert kubelet.pre_start(RESOURCE, ["d0"]) == api_pb2.PreStartContainerResponse()


def test_preferred_allocation_packs_over_grpc(kubelet: FakeKubelet, make_server: ServerFactory) -> None:
    make_server(MutableDeviceSource(make_devices(6)))  # gpu0: d0 d1, gpu1: d2 d3, gpu2: d4 d5
    kubelet.wait_for_registration(RESOURCE, 5)
    assert kubelet.get_preferred_allocation(RESOURCE, ["d0", "d2", "d3", "d5"], [], 2, timeout=5) == ["d2", "d3"]
    assert kubelet.get_preferred_allocation(RESOURCE, ["d0", "d1", "d2", "d3"], ["d2"], 2, timeout=5) == ["d2", "d3"]
    # Unsatisfiable: an empty answer, never an error that would fail the pod.
    assert kubelet.get_preferred_allocation(RESOURCE, ["d0"], ["d9"], 3, timeout=5) == []
    empty = kubelet.client(RESOURCE).get_preferred_allocation(api_pb2.PreferredAllocationRequest(), timeout=5)
    assert list(empty.container_responses) == []


class PreferringAllocator(EchoAllocator):
    def __init__(self, answer: object) -> None:
        super().__init__()
        self.answer = answer

    def preferred(self, available: Sequence[str], must_include: Sequence[str], size: int) -> Sequence[str] | None:
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer  # type: ignore[return-value]


@pytest.mark.parametrize(("answer", "expected"), [
    (["d5", "d0"], ["d5", "d0"]),          # a valid suggestion wins
    (None, ["d2", "d3"]),                  # no opinion: default policy
    (["d0"], ["d2", "d3"]),                # wrong size: default policy
    (["d0", "d9"], ["d2", "d3"]),          # not available: default policy
    (RuntimeError("boom"), ["d2", "d3"]),  # crash: default policy
])
def test_allocator_preference_hook(kubelet: FakeKubelet, make_server: ServerFactory, answer: object,
                                   expected: list[str]) -> None:
    make_server(MutableDeviceSource(make_devices(6)), PreferringAllocator(answer))
    kubelet.wait_for_registration(RESOURCE, 5)
    assert kubelet.get_preferred_allocation(RESOURCE, ["d0", "d2", "d3", "d5"], [], 2, timeout=5) == expected


def test_allocates_keep_succeeding_with_50_open_streams(kubelet: FakeKubelet, make_server: ServerFactory) -> None:
    source = MutableDeviceSource(make_devices(8))
    server = make_server(source)
    kubelet.wait_for_devices(RESOURCE, timeout=5)
    channels = [grpc.insecure_channel(unix_address(server.socket_path)) for _ in range(5)]
    streams = [DevicePluginClient(channels[i % 5]).list_and_watch() for i in range(50)]
    assert all(len(next(s).devices) == 8 for s in streams)
    assert server.active_streams == 51

    errors: list[BaseException] = []
    done = 0

    def allocate_loop() -> None:
        nonlocal done
        try:
            for i in range(25):
                kubelet.allocate(RESOURCE, [f"d{i % 7}"], timeout=5)  # d7 goes unhealthy
                done += 1
        except BaseException as error:  # reported below
            errors.append(error)

    workers = [threading.Thread(target=allocate_loop) for _ in range(4)]
    started = time.monotonic()
    for worker in workers:
        worker.start()
    source.set_health("d7", False)  # every stream gets the change while Allocates run
    assert all(next(s).devices[7].health == "Unhealthy" for s in streams)
    for worker in workers:
        worker.join(30)
    assert errors == [] and done == 100
    assert time.monotonic() - started < 20
    for stream in streams:
        stream.cancel()
    for channel in channels:
        channel.close()
