"""Building blocks for the scheduler tests: nodes that publish GPUs, pods that ask for them, clients."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import urllib3

from hami_mig.agent.records import INSTANCES_ANNOTATION, HeldInstance, encode_records
from hami_mig.kube.annotations import HAMI_MIG_GPUS
from hami_mig.kube.client import KubeClient
from hami_mig.kube.register import NodeDevice, encode_node_register
from hami_mig.scheduler.api import SchedulerApi
from hami_mig.scheduler.bind import Binder
from hami_mig.scheduler.config import SchedulerConfig
from hami_mig.scheduler.extender import Extender
from hami_mig.scheduler.lock import NodeLocker
from hami_mig.scheduler.planning import NodePlanner
from hami_mig.scheduler.snapshot import ApiSource
from hami_mig.testing.apiserver import FakeApiServer

A100_40 = "NVIDIA A100-SXM4-40GB"
A100_80 = "NVIDIA A100-SXM4-80GB"


def gpu_uuid(node: str, index: int) -> str:
    return f"GPU-{node}-{index}"


def register(node: str, gpus: int = 2, model: str = A100_40, mode: str = "mig", health: bool = True) -> str:
    return encode_node_register(
        NodeDevice(id=gpu_uuid(node, i), index=i, count=10, devmem=81920 if "80GB" in model else 40960, type=model,
                   mode=mode, health=health)
        for i in range(gpus))


AGENT = {HAMI_MIG_GPUS: "[]"}
"""What marks a node as run by hami-mig's agent (it publishes hami-mig.io/gpus); without it HAMi's plugin runs it."""


def node_obj(name: str, gpus: int = 2, model: str = A100_40, **annotations: str) -> dict[str, Any]:
    ann = {"hami.io/node-nvidia-register": register(name, gpus, model), **AGENT, **annotations}
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "annotations": ann}}


def pod_obj(name: str, limits: Mapping[str, str | int] | None = None, *, namespace: str = "default",
            node: str = "", annotations: Mapping[str, str] | None = None, phase: str = "Pending",
            containers: Sequence[Mapping[str, Any]] | None = None, uid: str = "") -> dict[str, Any]:
    if containers is None:
        container: dict[str, Any] = {"name": "main", "image": "busybox"}
        if limits:
            container["resources"] = {"limits": {k: str(v) for k, v in limits.items()}}
        containers = [container]
    meta: dict[str, Any] = {"name": name, "namespace": namespace, "uid": uid or f"uid-{namespace}-{name}",
                            "creationTimestamp": "2024-05-01T10:00:00Z"}
    if annotations:
        meta["annotations"] = dict(annotations)
    spec: dict[str, Any] = {"containers": [dict(c) for c in containers]}
    if node:
        spec["nodeName"] = node
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec, "status": {"phase": phase}}


def holding(node: str, gpu: int, *instances: tuple[str, int]) -> dict[str, str]:
    """The `hami-mig.io/instances` annotation of a running pod holding these instances on one GPU."""
    held = tuple(HeldInstance(gpu_uuid(node, gpu), f"MIG-{node}-{gpu}-{p}-{s}", p, s, 0) for p, s in instances)
    return {INSTANCES_ANNOTATION: encode_records({0: held})}


def extender_on(api: FakeApiServer, config: SchedulerConfig | None = None, *, lock_wait_s: float = 2.0,
                events: bool = True) -> Extender:
    """An extender reading and binding through the fake API server (real HTTP, real client)."""
    cfg = config or SchedulerConfig(lock_wait_s=lock_wait_s)
    kube = KubeClient(api.api_client(), component="hami-scheduler")
    sapi = SchedulerApi(kube)
    planner = NodePlanner(cfg)
    source = ApiSource(sapi, cfg.cache_ttl_s)
    locker = NodeLocker(sapi, timeout=cfg.lock_timeout, wait_s=cfg.lock_wait_s)
    binder = Binder(sapi, planner, locker, on_bound=source.assume, events=events)
    return Extender(cfg, source, binder, planner)


_HTTP = urllib3.PoolManager(retries=False, timeout=10.0)


def post(url: str, body: Any, *, raw: bytes | None = None) -> tuple[int, Any]:
    data = raw if raw is not None else json.dumps(body).encode()
    response = _HTTP.request("POST", url, body=data, headers={"Content-Type": "application/json"})
    try:
        return response.status, json.loads(response.data)
    except ValueError:
        return response.status, response.data.decode()


def agent_allocate(api: FakeApiServer, namespace: str, name: str, config: SchedulerConfig | None = None, *,
                   faithful: bool = False) -> None:
    """What the node agent does once the kubelet admits a bound pod: realize each reserved device with the
    planner (plan_slot), record the instances, blank to-allocate, set bind-phase success, release the lock.

    `faithful`: like the real agent, see only realized instances (records), not other pods' reservations."""
    from hami_mig.kube.annotations import (
        BIND_PHASE,
        DEVICES_TO_ALLOCATE,
        NODE_LOCK,
        decode_pod_devices,
        encode_pod_devices,
    )
    from hami_mig.kube.nodelock import NodeLock
    from hami_mig.mig.planner import apply_decision
    from hami_mig.scheduler.nodeview import build_view

    cfg = config or SchedulerConfig()
    planner = NodePlanner(cfg)
    pod = api.get_pod(namespace, name)
    node = pod["spec"]["nodeName"]
    others = [p for p in api.pods(node) if p["metadata"]["uid"] != pod["metadata"]["uid"]
              and not (faithful and (p["metadata"].get("annotations") or {}).get(BIND_PHASE) == "allocating")]
    view = build_view(api.get_node(node), others, planner, cfg.names)
    states = {g.uuid: g for g in view.gpus}
    devices = decode_pod_devices(pod["metadata"]["annotations"][DEVICES_TO_ALLOCATE])
    records: dict[int, tuple[HeldInstance, ...]] = {}
    for index, container in enumerate(devices):
        held = []
        for dev in container:
            uuid = dev.uuid.split("[", 1)[0]
            decision = planner.replay(states[uuid], dev.uuid, dev.memory_mib)
            assert decision.fits, f"the agent cannot realize {dev.uuid} for {namespace}/{name}: {decision.reason}"
            a = decision.allocations[0]
            held.append(HeldInstance(uuid, f"MIG-{uuid}-{a.profile}-{a.start}", a.profile, a.start, a.memory_mib))
            states[uuid] = apply_decision([states[uuid]], decision)[0]
        if held:
            records[index] = tuple(held)
    api.patch_pod(namespace, name, {"metadata": {"annotations": {
        INSTANCES_ANNOTATION: encode_records(records),
        DEVICES_TO_ALLOCATE: encode_pod_devices(tuple(() for _ in devices)),
        BIND_PHASE: "success",
    }}})
    lock = api.get_node(node)["metadata"].get("annotations", {}).get(NODE_LOCK)
    if lock and NodeLock.decode(lock).held_by(namespace, name):
        api.patch_node(node, {"metadata": {"annotations": {NODE_LOCK: None}}})
