"""A pynvml stand-in that lends every read and refuses, before it runs, any call that could change a GPU.

The doctor and the real-GPU conformance suite reach NVML only through it. A name is a read when it is
a getter of the system, a device, a GPU instance or a compute instance (`nvml<Object>Get…`,
`nvmlDeviceIs…`) or library setup; everything else an `nvml…` name can be (Create, Destroy, Set,
Reset, Clear, Register, Modify, Remove, Freeze, …) is refused, so a new mutating call is refused by
default. Raw C symbols fetched through `_nvmlGetFunctionPointer` obey the same rule.
"""

from __future__ import annotations

import re
from typing import Any

from hami_mig.errors import HamiMigError

READ_CALL = re.compile(
    r"^nvml(?:Init(?:WithFlags|_v2)?|Shutdown|ErrorString"
    r"|(?:System|Device|GpuInstance|ComputeInstance|Unit|Vgpu\w*?)(?:Get|Is)[A-Z0-9_]\w*)$"
)
HELPERS = frozenset({"nvmlStructToFriendlyObject", "nvmlFriendlyObject"})  # pynvml's own Python helpers


def is_read(name: str) -> bool:
    """True for an NVML call that only reads (and for library setup and pynvml's helpers)."""
    return name in HELPERS or bool(READ_CALL.match(name))


class ReadOnlyViolation(HamiMigError):
    """Code running under the read-only guard asked for an NVML call that could change a GPU."""


class ReadOnlyNvml:
    """Wraps the pynvml module (or the simulator); `refused` lists every call it turned away."""

    def __init__(self, module: Any) -> None:
        self._module = module
        self.refused: list[str] = []

    def _refuse(self, name: str) -> ReadOnlyViolation:
        self.refused.append(name)
        return ReadOnlyViolation(f"{name} could change a GPU; this read-only session refuses it")

    def __getattr__(self, name: str) -> Any:
        if name == "_nvmlGetFunctionPointer":
            return self._function_pointer
        if name.startswith("nvml") and not is_read(name):
            raise self._refuse(name)
        return getattr(self._module, name)

    def _function_pointer(self, symbol: str) -> Any:
        """Look a C symbol up (that changes nothing); a mutating one comes back as a function that refuses."""
        fn = self._module._nvmlGetFunctionPointer(symbol)
        if is_read(symbol):
            return fn

        def refused(*_args: Any) -> int:
            raise self._refuse(symbol)

        return refused
