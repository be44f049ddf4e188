"""Generic kubelet device plugin (API v1beta1): serves devices from a DeviceSource, delegates Allocate."""

from .allocator import (
    AllocationError,
    Allocator,
    ContainerAllocation,
    DeadlineExceededError,
    DeviceSpec,
    FailedPreconditionError,
    InternalAllocationError,
    InvalidRequestError,
    Mount,
    PreferenceProvider,
    ResourceExhaustedError,
    UnavailableError,
)
from .devices import Device, DeviceError, DeviceSource, MutableDeviceSource, StaticDeviceSource
from .preferred import choose_preferred
from .protocol import (
    API_VERSION,
    DEFAULT_KUBELET_DIR,
    KUBELET_SOCKET,
    InvalidResourceNameError,
    SocketPathError,
    validate_resource_name,
)
from .registration import Backoff, RegistrationError
from .server import DevicePluginServer, ServerStateError, SocketInUseError
from .signals import ShutdownRequest, install_signal_handlers, serve_until_signal

__all__ = [
    "API_VERSION",
    "DEFAULT_KUBELET_DIR",
    "KUBELET_SOCKET",
    "AllocationError",
    "Allocator",
    "Backoff",
    "ContainerAllocation",
    "DeadlineExceededError",
    "Device",
    "DeviceError",
    "DevicePluginServer",
    "DeviceSource",
    "DeviceSpec",
    "FailedPreconditionError",
    "InternalAllocationError",
    "InvalidRequestError",
    "InvalidResourceNameError",
    "Mount",
    "MutableDeviceSource",
    "PreferenceProvider",
    "RegistrationError",
    "ResourceExhaustedError",
    "ServerStateError",
    "ShutdownRequest",
    "SocketInUseError",
    "SocketPathError",
    "StaticDeviceSource",
    "UnavailableError",
    "choose_preferred",
    "install_signal_handlers",
    "serve_until_signal",
    "validate_resource_name",
]
