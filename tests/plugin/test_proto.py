"""The committed proto matches the spec table field for field, and regenerates byte for byte."""

from __future__ import annotations

import filecmp
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import FieldDescriptor

from hami_mig.plugin import codegen
from hami_mig.plugin.proto import api_pb2

ROOT = Path(__file__).resolve().parents[2]

STRING, BOOL, INT32, INT64, MESSAGE = (FieldDescriptor.TYPE_STRING, FieldDescriptor.TYPE_BOOL,
                                       FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_INT64,
                                       FieldDescriptor.TYPE_MESSAGE)
ONE, MANY = "one", "many"

# message -> [(field, number, type, cardinality, message type)] straight from the spec table.
SPEC: dict[str, list[tuple[str, int, int, str, str | None]]] = {
    "DevicePluginOptions": [("pre_start_required", 1, BOOL, ONE, None),
                            ("get_preferred_allocation_available", 2, BOOL, ONE, None)],
    "RegisterRequest": [("version", 1, STRING, ONE, None), ("endpoint", 2, STRING, ONE, None),
                        ("resource_name", 3, STRING, ONE, None),
                        ("options", 4, MESSAGE, ONE, "DevicePluginOptions")],
    "Empty": [],
    "ListAndWatchResponse": [("devices", 1, MESSAGE, MANY, "Device")],
    "TopologyInfo": [("nodes", 1, MESSAGE, MANY, "NUMANode")],
    "NUMANode": [("ID", 1, INT64, ONE, None)],
    "Device": [("ID", 1, STRING, ONE, None), ("health", 2, STRING, ONE, None),
               ("topology", 3, MESSAGE, ONE, "TopologyInfo")],
    "PreStartContainerRequest": [("devices_ids", 1, STRING, MANY, None)],
    "PreStartContainerResponse": [],
    "PreferredAllocationRequest": [("container_requests", 1, MESSAGE, MANY, "ContainerPreferredAllocationRequest")],
    "ContainerPreferredAllocationRequest": [("available_deviceIDs", 1, STRING, MANY, None),
                                            ("must_include_deviceIDs", 2, STRING, MANY, None),
                                            ("allocation_size", 3, INT32, ONE, None)],
    "PreferredAllocationResponse": [("container_responses", 1, MESSAGE, MANY,
                                     "ContainerPreferredAllocationResponse")],
    "ContainerPreferredAllocationResponse": [("deviceIDs", 1, STRING, MANY, None)],
    "AllocateRequest": [("container_requests", 1, MESSAGE, MANY, "ContainerAllocateRequest")],
    "ContainerAllocateRequest": [("devices_ids", 1, STRING, MANY, None)],
    "CDIDevice": [("name", 1, STRING, ONE, None)],
    "AllocateResponse": [("container_responses", 1, MESSAGE, MANY, "ContainerAllocateResponse")],
    "ContainerAllocateResponse": [("envs", 1, MESSAGE, MANY, "ContainerAllocateResponse.EnvsEntry"),
                                  ("mounts", 2, MESSAGE, MANY, "Mount"),
                                  ("devices", 3, MESSAGE, MANY, "DeviceSpec"),
                                  ("annotations", 4, MESSAGE, MANY, "ContainerAllocateResponse.AnnotationsEntry"),
                                  ("cdi_devices", 5, MESSAGE, MANY, "CDIDevice")],
    "Mount": [("container_path", 1, STRING, ONE, None), ("host_path", 2, STRING, ONE, None),
              ("read_only", 3, BOOL, ONE, None)],
    "DeviceSpec": [("container_path", 1, STRING, ONE, None), ("host_path", 2, STRING, ONE, None),
                   ("permissions", 3, STRING, ONE, None)],
}

SERVICES = {
    "Registration": [("Register", "RegisterRequest", "Empty", False)],
    "DevicePlugin": [
        ("GetDevicePluginOptions", "Empty", "DevicePluginOptions", False),
        ("ListAndWatch", "Empty", "ListAndWatchResponse", True),
        ("GetPreferredAllocation", "PreferredAllocationRequest", "PreferredAllocationResponse", False),
        ("Allocate", "AllocateRequest", "AllocateResponse", False),
        ("PreStartContainer", "PreStartContainerRequest", "PreStartContainerResponse", False),
    ],
}


def test_package_and_syntax() -> None:
    assert api_pb2.DESCRIPTOR.package == "v1beta1"
    proto = descriptor_pb2.FileDescriptorProto()
    api_pb2.DESCRIPTOR.CopyToProto(proto)
    assert proto.syntax == "proto3"
    assert not proto.dependency, "the spec needs no imports"


def test_messages_match_the_spec_table() -> None:
    assert set(api_pb2.DESCRIPTOR.message_types_by_name) == set(SPEC)
    for name, fields in SPEC.items():
        message = api_pb2.DESCRIPTOR.message_types_by_name[name]
        actual = [
            (f.name, f.number, f.type, MANY if f.is_repeated else ONE,
             f.message_type.full_name.removeprefix("v1beta1.") if f.message_type else None)
            for f in message.fields
        ]
        assert actual == fields, name


def test_maps_are_string_to_string() -> None:
    response = api_pb2.DESCRIPTOR.message_types_by_name["ContainerAllocateResponse"]
    for field in ("envs", "annotations"):
        entry = response.fields_by_name[field].message_type
        assert entry is not None and entry.GetOptions().map_entry
        assert [(f.name, f.type) for f in entry.fields] == [("key", STRING), ("value", STRING)]


def test_services_and_wire_paths() -> None:
    assert set(api_pb2.DESCRIPTOR.services_by_name) == set(SERVICES)
    for service_name, methods in SERVICES.items():
        service = api_pb2.DESCRIPTOR.services_by_name[service_name]
        actual = [(m.name, m.input_type.name, m.output_type.name, m.server_streaming) for m in service.methods]
        assert actual == methods
        assert all(not m.client_streaming for m in service.methods)
    from hami_mig.plugin.rpc import DEVICE_PLUGIN_METHODS, REGISTER_METHOD
    assert REGISTER_METHOD == "/v1beta1.Registration/Register"
    assert "/v1beta1.DevicePlugin/Allocate" in DEVICE_PLUGIN_METHODS


def test_package_copy_of_the_proto_is_the_source_of_truth() -> None:
    assert (ROOT / "proto" / "api.proto").read_bytes() == (codegen.PACKAGE_PROTO_DIR / "api.proto").read_bytes()


def test_committed_descriptor_equals_a_fresh_compile(tmp_path: Path) -> None:
    """Version-independent: whatever grpcio-tools is installed, the compiled schema must be the same."""
    codegen.generate(ROOT / "proto" / "api.proto", tmp_path)
    namespace: dict[str, object] = {}
    source = (tmp_path / "api_pb2.py").read_text()
    serialized = source[source.index("AddSerializedFile(") + len("AddSerializedFile("):]
    serialized = serialized[: serialized.index("')") + 1]
    exec(f"blob = {serialized}", namespace)  # the generated literal, evaluated, never imported twice
    fresh = descriptor_pb2.FileDescriptorProto.FromString(namespace["blob"])  # type: ignore[arg-type]
    committed = descriptor_pb2.FileDescriptorProto()
    api_pb2.DESCRIPTOR.CopyToProto(committed)
    assert fresh == committed


def test_regeneration_is_byte_identical(tmp_path: Path) -> None:
    if codegen.installed_tools_version() != codegen.GENERATED_WITH:
        pytest.skip(f"byte-identical output needs {codegen.GENERATED_WITH}, found {codegen.installed_tools_version()}")
    written = codegen.generate(ROOT / "proto" / "api.proto", tmp_path)
    assert [p.name for p in written] == list(codegen.GENERATED_FILES)
    for name in codegen.GENERATED_FILES:
        assert filecmp.cmp(tmp_path / name, codegen.PACKAGE_PROTO_DIR / name, shallow=False), name
    assert "from . import api_pb2 as api__pb2" in (tmp_path / "api_pb2_grpc.py").read_text()
