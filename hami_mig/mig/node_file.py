"""The NODE.json format of `hami-mig plan` / `explain`: GPUs with their model and instances.

`hami-mig devices --json` output is read as well (a GPU object with `name` and no `model`): each
GPU with MIG enabled, its instances in use when processes run on them (or the driver will not
say, or the instance has several compute instances, a shape hami-mig does not make), free otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hami_mig.errors import InputError
from hami_mig.mig.catalogue import Catalogue, UnknownModelError
from hami_mig.mig.state import GpuState, Instance, check_layout


def _int(raw: Mapping[str, Any], key: str, field: str, default: int | None = None) -> int:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InputError(f"{field}.{key}", value, "a whole number >= 0")
    return value


def parse_node(doc: Any, catalogue: Catalogue) -> list[GpuState]:
    """`{"gpus": [...]}` or a single GPU object -> GpuStates, every layout checked for legality."""
    if isinstance(doc, Mapping) and "gpus" in doc:
        gpus_raw = doc["gpus"]
        base = "gpus"
    elif isinstance(doc, Mapping) and ("model" in doc or "name" in doc):
        gpus_raw = [doc]
        base = "gpu"
    else:
        raise InputError("node", type(doc).__name__, 'an object {"gpus": [...]} (a node file or `hami-mig devices '
                         '--json` output) or one GPU object with a "model"')
    if not isinstance(gpus_raw, list) or not gpus_raw:
        raise InputError(base, gpus_raw, "a non-empty list of GPU objects")
    out: list[GpuState] = []
    seen: set[int] = set()
    skipped: list[str] = []
    for n, raw in enumerate(gpus_raw):
        field = f"{base}[{n}]" if base == "gpus" else base
        if not isinstance(raw, Mapping):
            raise InputError(field, raw, "a GPU object with model, index, uuid and instances")
        if "model" not in raw and "name" in raw:  # `hami-mig devices --json`
            if raw.get("mig_mode") != "enabled":
                skipped.append(f"GPU {raw.get('index', n)} (MIG {raw.get('mig_mode')})")
                continue
            raw = {**raw, "model": raw["name"], "instances": _device_instances(raw.get("instances"), field)}
        model_name = raw.get("model")
        if not isinstance(model_name, str):
            raise InputError(f"{field}.model", model_name, "a GPU model name such as 'NVIDIA A100-SXM4-80GB'")
        try:
            model = catalogue.lookup(model_name)
        except UnknownModelError as exc:
            raise InputError(f"{field}.model", model_name, f"one of: {', '.join(exc.known)}") from None
        index = _int(raw, "index", field, n)
        if index in seen:
            raise InputError(f"{field}.index", index, "GPU indices must be unique")
        seen.add(index)
        uuid = raw.get("uuid", f"GPU-{index}")
        if not isinstance(uuid, str) or not uuid:
            raise InputError(f"{field}.uuid", uuid, "a GPU UUID string")
        insts_raw = raw.get("instances", [])
        if not isinstance(insts_raw, list):
            raise InputError(f"{field}.instances", insts_raw, "a list of {profile, start, in_use}")
        instances: list[Instance] = []
        for k, inst in enumerate(insts_raw):
            ifield = f"{field}.instances[{k}]"
            if not isinstance(inst, Mapping):
                raise InputError(ifield, inst, "an object {profile, start, in_use}")
            profile = inst.get("profile")
            if not isinstance(profile, str):
                raise InputError(f"{ifield}.profile", profile, "a MIG profile name such as '3g.40gb'")
            in_use = inst.get("in_use", False)
            if not isinstance(in_use, bool):
                raise InputError(f"{ifield}.in_use", in_use, "true or false")
            mig_uuid = inst.get("uuid")
            if mig_uuid is not None and not isinstance(mig_uuid, str):
                raise InputError(f"{ifield}.uuid", mig_uuid, "a MIG UUID string")
            instances.append(Instance(profile, _int(inst, "start", ifield), in_use, mig_uuid))
        check_layout(model, instances, f"{field}.instances")
        out.append(GpuState(index, uuid, model, ()).with_instances(instances))
    if not out:
        raise InputError(base, ", ".join(skipped), "at least one GPU with MIG enabled")
    return out


def _device_instances(rows: Any, field: str) -> list[dict[str, Any]]:
    """`devices --json` instance rows (one per compute instance) -> node-file instances (one per GPU instance)."""
    if not isinstance(rows, list):
        raise InputError(f"{field}.instances", rows, "a list of instance rows as `hami-mig devices --json` prints")
    merged: dict[tuple[Any, Any], dict[str, Any]] = {}
    for k, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise InputError(f"{field}.instances[{k}]", row, "an object {profile, start, mig_uuid, processes}")
        key = (row.get("profile"), row.get("start"))
        processes = row.get("processes", [])
        busy = processes != [] and processes is not None  # a pid list, or "unknown" (no permission)
        # a compute instance that does not span its GPU instance: a shape hami-mig never makes (the agent's rule)
        busy = busy or (row.get("mig_uuid") is not None and row.get("standard") is False)
        if key in merged:  # a second compute instance in one GPU instance: not a shape hami-mig makes
            merged[key]["in_use"] = True
            continue
        merged[key] = {"profile": row.get("profile"), "start": row.get("start"), "in_use": busy,
                       "uuid": row.get("mig_uuid")}
    return list(merged.values())
