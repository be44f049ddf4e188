"""What the agent publishes on its Node: HAMi's register and handshake annotations, and gpumem capacity."""

from __future__ import annotations

from collections.abc import Sequence

from hami_mig.agent.config import AgentConfig
from hami_mig.agent.inventory import Inventory
from hami_mig.kube.annotations import MODE_MIG, NODE_HANDSHAKE, NODE_REGISTER
from hami_mig.kube.handshake import Handshake
from hami_mig.kube.register import NodeDevice, encode_node_register
from hami_mig.nvml import GpuDevice


def node_devices(inv: Inventory, config: AgentConfig) -> list[NodeDevice]:
    managed = {s.uuid for s in inv.states}
    return [
        NodeDevice(id=d.uuid, index=d.index, count=config.split_count, devmem=d.memory_mib, devcore=100,
                   type=d.name, numa=d.numa_node if d.numa_node is not None else 0, mode=MODE_MIG,
                   health=d.mig_mode == "enabled")
        for d in inv.devices if d.uuid in managed
    ]


def node_annotations(inv: Inventory, config: AgentConfig) -> dict[str, str | None]:
    return {
        NODE_REGISTER: encode_node_register(node_devices(inv, config)),
        NODE_HANDSHAKE: Handshake.reported().encode(),
    }


def gpumem_capacity(devices: Sequence[GpuDevice], managed: set[str], resource: str) -> dict[str, str | None]:
    """Total MIG-usable memory (MiB) of the managed GPUs, for schedulers that read `nvidia.com/gpumem`."""
    total = sum(d.memory_mib for d in devices if d.uuid in managed)
    return {resource: str(total)}
