"""HAMi's annotation keys and the pod devices string, as exact codecs: the scheduler and we must agree byte for byte."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from hami_mig.errors import InputError

# --- pod annotations (scheduler <-> node agent) -------------------------------------------------
DEVICES_TO_ALLOCATE = "hami.io/vgpu-devices-to-allocate"
DEVICES_ALLOCATED = "hami.io/vgpu-devices-allocated"
VGPU_NODE = "hami.io/vgpu-node"  # also a pod label
VGPU_TIME = "hami.io/vgpu-time"
BIND_TIME = "hami.io/bind-time"
BIND_PHASE = "hami.io/bind-phase"
VGPU_MODE = "nvidia.com/vgpu-mode"

# --- node annotations ---------------------------------------------------------------------------
NODE_REGISTER = "hami.io/node-nvidia-register"
NODE_HANDSHAKE = "hami.io/node-handshake"
NODE_LOCK = "hami.io/mutex.lock"
HAMI_MIG_GPUS = "hami-mig.io/gpus"
"""hami-mig's own per-GPU status, published by its node agent only: the cluster side tells hami-mig nodes from
nodes run by HAMi's device plugin by it."""

# --- resource names (defaults; the device-config may rename them, see resources.ResourceNames) ----
RESOURCE_GPU = "nvidia.com/gpu"
RESOURCE_GPUMEM = "nvidia.com/gpumem"
RESOURCE_GPUMEM_PERCENTAGE = "nvidia.com/gpumem-percentage"
RESOURCE_GPUCORES = "nvidia.com/gpucores"

# --- operating modes (node config, register annotation, vgpu-mode) ------------------------------
MODE_HAMI_CORE = "hami-core"
MODE_MIG = "mig"
MODE_MPS = "mps"
MODES = (MODE_HAMI_CORE, MODE_MIG, MODE_MPS)

VENDOR_NVIDIA = "NVIDIA"
_INT32_MAX = 2**31 - 1


class BindPhase(StrEnum):
    """`hami.io/bind-phase`: the scheduler writes allocating, the node agent success or failed."""

    ALLOCATING = "allocating"
    SUCCESS = "success"
    FAILED = "failed"


def decode_bind_phase(text: str) -> BindPhase:
    try:
        return BindPhase(text.strip())
    except ValueError:
        raise InputError(BIND_PHASE, text, "one of allocating, success, failed") from None


def encode_unix_time(seconds: float) -> str:
    """`hami.io/vgpu-time` / `hami.io/bind-time`: whole unix seconds."""
    return str(int(seconds))


def decode_unix_time(text: str, key: str = BIND_TIME) -> int:
    value = text.strip()
    if not value.isascii() or not value.isdigit():
        raise InputError(key, text, "whole unix seconds, e.g. 1715000000")
    return int(value)


# --- MIG slot references ------------------------------------------------------------------------
_SLOT_RE = re.compile(r"^(?P<gpu>[^\[\]]+)\[(?P<geometry>[0-9]+)-(?P<slot>[0-9]+)\]$")


@dataclass(frozen=True)
class MigSlotRef:
    """`GPU-<uuid>[<geometryIdx>-<slotIdx>]`: a slot of one configured geometry on one physical GPU."""

    gpu_uuid: str
    geometry_index: int
    slot: int

    def __post_init__(self) -> None:
        if not _is_token(self.gpu_uuid) or "[" in self.gpu_uuid or "]" in self.gpu_uuid:
            raise InputError("MIG slot GPU UUID", self.gpu_uuid, "a non-empty UUID without , : ; [ ] or spaces")
        for name, value in (("geometry index", self.geometry_index), ("slot index", self.slot)):
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _INT32_MAX:
                raise InputError(f"MIG slot {name}", value, "a whole number >= 0")

    def encode(self) -> str:
        return f"{self.gpu_uuid}[{self.geometry_index}-{self.slot}]"

    @classmethod
    def parse(cls, text: str) -> MigSlotRef | None:
        """The slot named by a device UUID, None for a plain GPU UUID; InputError for a malformed slot suffix."""
        if "[" not in text and "]" not in text:
            return None
        match = _SLOT_RE.match(text)
        if match is None:
            raise InputError("MIG slot", text, "GPU-<uuid>[<geometryIdx>-<slotIdx>], e.g. GPU-x[1-2]")
        return cls(match["gpu"], int(match["geometry"]), int(match["slot"]))


# --- pod devices string -------------------------------------------------------------------------
def _is_token(text: object) -> bool:
    return (
        isinstance(text, str)
        and text != ""
        and text.isprintable()
        and not any(c in text for c in ",:;")
        and text == "".join(text.split())
    )


@dataclass(frozen=True, kw_only=True)
class ContainerDevice:
    """One device of one container: `UUID,NVIDIA,<mem MiB>,<cores>`."""

    uuid: str
    vendor: str = VENDOR_NVIDIA
    memory_mib: int
    cores: int

    def __post_init__(self) -> None:
        if not _is_token(self.uuid):
            raise InputError("device uuid", self.uuid, "a non-empty id without , : ; or whitespace")
        if self.uuid.count("[") or self.uuid.count("]"):
            MigSlotRef.parse(self.uuid)  # validates the slot form
        if not _is_token(self.vendor):
            raise InputError("device vendor", self.vendor, "a non-empty word without , : ; or whitespace")
        for name, value in (("device memory (MiB)", self.memory_mib), ("device cores (%)", self.cores)):
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _INT32_MAX:
                raise InputError(name, value, f"a whole number from 0 to {_INT32_MAX}")

    @property
    def mig_slot(self) -> MigSlotRef | None:
        return MigSlotRef.parse(self.uuid)

    def encode(self) -> str:
        return f"{self.uuid},{self.vendor},{self.memory_mib},{self.cores}"


ContainerDevices = tuple[ContainerDevice, ...]
PodDevices = tuple[ContainerDevices, ...]
"""One entry per container, init containers first, in spec order; an empty entry = no devices (or allocated)."""


def encode_pod_devices(devices: PodDevices) -> str:
    """Each device ends with `:`, each container with `;`, as HAMi's EncodePodSingleDevice writes it."""
    return "".join("".join(device.encode() + ":" for device in container) + ";" for container in devices)


def decode_pod_devices(text: str, key: str = DEVICES_TO_ALLOCATE) -> PodDevices:
    """Inverse of encode_pod_devices; like HAMi: "" = no containers, one trailing `;` optional, blank parts skipped."""
    body = text.strip()
    if body == "":
        return ()
    if body.endswith(";"):
        body = body[:-1]
    return tuple(_decode_container(part, key, text) for part in body.split(";"))


def _decode_container(part: str, key: str, whole: str) -> ContainerDevices:
    devices = []
    for fragment in part.split(":"):
        if fragment.strip() == "":
            continue
        fields = [field.strip() for field in fragment.split(",")]
        if len(fields) != 4:
            raise InputError(key, fragment, f"each device is UUID,VENDOR,<mem MiB>,<cores> (in {whole!r})")
        uuid, vendor, memory, cores = fields
        for name, number in (("memory", memory), ("cores", cores)):
            if not number.isascii() or not number.isdigit() or len(number) > 10 or int(number) > _INT32_MAX:
                raise InputError(key, fragment, f"{name} must be a whole number >= 0 (in {whole!r})")
        try:
            devices.append(ContainerDevice(uuid=uuid, vendor=vendor, memory_mib=int(memory), cores=int(cores)))
        except InputError as exc:
            raise InputError(key, fragment, f"{exc.field}: {exc.allowed} (in {whole!r})") from None
    return tuple(devices)


def next_pending_container(devices: PodDevices) -> int | None:
    """Index of the first container that still has devices to allocate (HAMi allocates containers in order)."""
    return next((index for index, container in enumerate(devices) if container), None)


def erase_next_container(text: str) -> str:
    """`vgpu-devices-to-allocate` once its next container is allocated, byte for byte as HAMi v2.9's device plugin
    writes it (`eraseNextDeviceTypeFromAnnotation` in plugin/util.go): the value split on `;` (a trailing `;`
    leaves an empty last entry, which v2.9's DecodePodDevices keeps), the first entry with devices emptied,
    every entry re-encoded and followed by `;`. So `A:;B:;` becomes `;B:;;`, then `;;;;`."""
    entries = [_decode_container(part, DEVICES_TO_ALLOCATE, text) for part in text.split(";")]
    first = next_pending_container(tuple(entries))
    if first is not None:
        entries[first] = ()
    return encode_pod_devices(tuple(entries))
