"""What one container asks of the GPUs, in HAMi's terms, independent of how it was written down."""

from __future__ import annotations

from dataclasses import dataclass

from hami_mig.errors import InputError


@dataclass(frozen=True)
class Request:
    """`count` instances on `count` distinct GPUs, each with at least this much memory.

    `memory_mib` is per instance (nvidia.com/gpumem); `memory_percent` is a share of the
    physical GPU's memory (nvidia.com/gpumem-percentage). Neither means a whole GPU.
    `cores` (nvidia.com/gpucores, percent of SMs) is a filter only.
    """

    count: int = 1
    memory_mib: int | None = None
    memory_percent: int | None = None
    cores: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.count, bool) or not isinstance(self.count, int) or self.count < 1:
            raise InputError("nvidia.com/gpu", self.count, "the count must be a whole number >= 1")
        if self.memory_mib is not None and self.memory_percent is not None:
            raise InputError(
                "nvidia.com/gpumem-percentage",
                self.memory_percent,
                "give either nvidia.com/gpumem or nvidia.com/gpumem-percentage, not both",
            )
        if self.memory_mib is not None and (
            isinstance(self.memory_mib, bool) or not isinstance(self.memory_mib, int) or self.memory_mib < 1
        ):
            raise InputError("nvidia.com/gpumem", self.memory_mib, "memory must be a whole number of MiB >= 1")
        if self.memory_percent is not None and (
            isinstance(self.memory_percent, bool)
            or not isinstance(self.memory_percent, int)
            or not 1 <= self.memory_percent <= 100
        ):
            raise InputError(
                "nvidia.com/gpumem-percentage", self.memory_percent, "a whole percentage from 1 to 100"
            )
        if self.cores is not None and (
            isinstance(self.cores, bool) or not isinstance(self.cores, int) or not 0 <= self.cores <= 100
        ):
            raise InputError("nvidia.com/gpucores", self.cores, "a whole percentage from 0 to 100")

    @property
    def whole_gpu(self) -> bool:
        """True when the request names no memory: it means the largest single instance a GPU offers."""
        return self.memory_mib is None and self.memory_percent is None

    def describe(self) -> str:
        if self.memory_mib is not None:
            size = f"{self.memory_mib} MiB"
        elif self.memory_percent is not None:
            size = f"{self.memory_percent}% of GPU memory"
        else:
            size = "a whole GPU"
        each = " each" if self.count > 1 else ""
        cores = f", >= {self.cores}% cores" if self.cores else ""
        return f"{self.count} instance{'s' if self.count > 1 else ''} of {size}{each}{cores}"
