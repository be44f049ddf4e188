"""Test controls for GPUs that differ from the catalogue: another name, no MIG at all, a drifted profile table."""

from __future__ import annotations

from typing import Any

from hami_mig.testing.nvmlsim import driver
from hami_mig.testing.nvmlsim.core import SimCore

_DRIFT_KEYS = frozenset({"memory_mib", "max_count", "starts", "absent"})


class GpuVariants(SimCore):
    """Make one simulated GPU look like hardware hami-mig has not met; kept in the state file like the rest."""

    def set_gpu_name(self, index: int, name: str | None) -> None:
        """NVML reports this name (a model missing from the catalogue) over the same profile table."""
        self._edit_gpu(index, name=name)

    def set_mig_capable(self, index: int, capable: bool) -> None:
        """A GPU without MIG: nvmlDeviceGetMigMode answers NOT_SUPPORTED and MIG calls are refused."""
        changes: dict[str, Any] = {"mig_capable": capable}
        if not capable:
            changes.update(mig_current=0, mig_pending=0)
        self._edit_gpu(index, **changes)

    def drift_profile(self, index: int, profile: str, **changes: Any) -> None:
        """The driver reports `profile` differently: memory_mib=, max_count=, starts=[...], or absent=True."""
        unknown = set(changes) - _DRIFT_KEYS
        if unknown:
            raise ValueError(f"drift_profile: unknown change(s) {sorted(unknown)}; use {sorted(_DRIFT_KEYS)}")
        with self.store.transaction() as state:
            gpu = state.gpus[index]
            driver.model_of(gpu.model).profile(profile)  # a name the GPU really has
            entry = dict(gpu.profile_drift.get(profile, {}))
            entry.update({k: list(v) if k == "starts" else v for k, v in changes.items()})
            gpu.profile_drift = {**gpu.profile_drift, profile: entry}
            self.store.mark_dirty()
