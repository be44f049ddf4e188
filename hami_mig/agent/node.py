"""What the agent publishes on its Node: HAMi's register and handshake annotations, and gpumem capacity."""

from __future__ import annotations

import json
from collections.abc import Sequence

from hami_mig.agent.config import AgentConfig
from hami_mig.agent.inventory import Inventory
from hami_mig.kube.annotations import HAMI_MIG_GPUS, MODE_MIG, NODE_HANDSHAKE, NODE_REGISTER
from hami_mig.kube.handshake import Handshake
from hami_mig.kube.register import NodeDevice, encode_node_register, register_type
from hami_mig.nvml import GpuDevice


def node_devices(inv: Inventory, config: AgentConfig) -> list[NodeDevice]:
    managed = {s.uuid for s in inv.states}
    return [
        NodeDevice(id=d.uuid, index=d.index, count=config.split_count, devmem=d.memory_mib, devcore=100,
                   type=register_type(d.name, config.register_format), numa=max(d.numa_node or 0, 0),
                   mode=MODE_MIG, health=d.mig_mode == "enabled")
        for d in inv.devices if d.uuid in managed
    ]


GPUS_ANNOTATION = HAMI_MIG_GPUS


def gpu_status(inv: Inventory, config: AgentConfig) -> str:
    """hami-mig's own per-GPU status, for people and tools: every GPU, managed or not, and why not.

    `[{"index": 0, "uuid": "GPU-…", "mode": "mig", "migMode": "pending", "managed": false, "reason": "…"}]`
    """
    managed = {s.uuid for s in inv.states}
    rows = [{"index": d.index, "uuid": d.uuid, "mode": config.mode_of(d.uuid, d.index)[0], "migMode": d.mig_mode,
             "managed": d.uuid in managed, "reason": inv.unmanaged.get(d.index, "")} for d in inv.devices]
    return json.dumps(rows, separators=(",", ":"))


def node_annotations(inv: Inventory, config: AgentConfig) -> dict[str, str | None]:
    return {
        NODE_REGISTER: encode_node_register(node_devices(inv, config), config.register_format),
        NODE_HANDSHAKE: Handshake.reported().encode(),
        GPUS_ANNOTATION: gpu_status(inv, config),
    }


def gpumem_capacity(devices: Sequence[GpuDevice], managed: set[str], resource: str) -> dict[str, str | None]:
    """Total MIG-usable memory (MiB) of the managed GPUs, for schedulers that read `nvidia.com/gpumem`."""
    total = sum(d.memory_mib for d in devices if d.uuid in managed)
    return {resource: str(total)}
