"""What the container gets for its MIG devices: envs for the NVIDIA container toolkit, or CDI names."""

from __future__ import annotations

from collections.abc import Sequence

from hami_mig.plugin import ContainerAllocation

CDI_KIND = "nvidia.com/gpu"


def container_allocation(mig_uuids: Sequence[str], cdi: bool) -> ContainerAllocation:
    """`NVIDIA_VISIBLE_DEVICES=MIG-…` (the toolkit exposes exactly these devices, and CUDA numbers them
    0..n-1 inside the container, so CUDA_VISIBLE_DEVICES is deliberately left unset). With CDI the
    same devices are named `nvidia.com/gpu=MIG-<uuid>` (nvidia-ctk's `uuid` device-name strategy)."""
    visible = ",".join(mig_uuids)
    if cdi:  # the runtime injects the devices; an env as well would make the toolkit inject them twice
        return ContainerAllocation(envs={"HAMI_MIG_DEVICES": visible},
                                   cdi_devices=tuple(f"{CDI_KIND}={u}" for u in mig_uuids))
    return ContainerAllocation(envs={"NVIDIA_VISIBLE_DEVICES": visible, "HAMI_MIG_DEVICES": visible})
