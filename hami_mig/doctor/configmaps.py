"""HAMi's two ConfigMaps as the agent would read them: do they parse, and which keys would be silently ignored."""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hami_mig.doctor.report import Check, fail, ok, warn
from hami_mig.errors import InputError
from hami_mig.kube.annotations import MODE_MIG
from hami_mig.kube.nodeconfig import NodeConfig, node_config_for, parse_node_configs
from hami_mig.mig.catalogue import Catalogue
from hami_mig.mig.geometry import DeviceConfig, default_device_config, parse_device_config, validate_device_config

Schema = Mapping[str, "Schema | None"]  # a key's sub-schema; None: not looked into

# HAMi v2.9.0 pkg/device/nvidia/device.go `DevicePluginConfigs` (json tags), plus hami-mig's per-GPU `gpus` list.
NODE_CONFIG: Schema = {"nodeconfig": {
    "name": None, "operatingmode": None, "migstrategy": None, "filterdevices": {"uuid": None, "index": None},
    "enablegetpreferredallocation": None, "devicesplitcount": None, "devicememoryscaling": None,
    "devicecorescaling": None, "preconfigureddevicememory": None, "libcudaloglevel": None,
    "gpus": {"uuid": None, "index": None, "operatingmode": None},
}}


def unknown_keys(doc: Any, schema: Schema, where: str = "", *, fold_case: bool = False) -> list[str]:
    """Dotted paths of config.json keys the schema does not know (lists are walked item by item), each with the nearest
    known key when one is close. Go's JSON decoder matches keys case-insensitively (`fold_case`), its YAML
    decoder exactly."""
    if isinstance(doc, list):
        return [k for i, item in enumerate(doc) for k in unknown_keys(item, schema, f"{where}[{i}]",
                                                                      fold_case=fold_case)]
    if not isinstance(doc, Mapping):
        return []
    known = {(k.lower() if fold_case else k): v for k, v in schema.items()}
    out: list[str] = []
    for key, value in doc.items():
        look = str(key).lower() if fold_case else str(key)
        path = f"{where}.{key}" if where else str(key)
        if look not in known:
            near = difflib.get_close_matches(look, list(known), n=1)
            out.append(path + (f" (did you mean {near[0]}?)" if near else ""))
        elif (sub := known[look]) is not None:
            out += unknown_keys(value, sub, path, fold_case=fold_case)
    return out


def check_id(what: str) -> str:
    return "config.device" if what == "device-config.yaml" else "config.node"


def _read(path: str, what: str) -> tuple[str | None, Check | None]:
    try:
        return Path(path).read_text(encoding="utf-8"), None
    except OSError as exc:
        return None, fail(check_id(what), what, f"{path}: cannot read: {exc.strerror or exc}",
                          f"pass the path of HAMi's {what} (a key of its ConfigMap)", scope="input")


def _unknown(what: str, path: str, keys: list[str]) -> Check:
    return warn(check_id(what), what, f"{path}: unknown key(s) {', '.join(keys)}",
                "correct or remove them: HAMi and hami-mig ignore unknown keys, so the value meant there is not used",
                scope="input")


def device_config_checks(path: str | None, catalogue: Catalogue) -> tuple[list[Check], DeviceConfig]:
    """device-config.yaml; the GPU checks use the parsed file, or HAMi's built-in table without one."""
    what = "device-config.yaml"
    builtin = default_device_config()
    if path is None:
        return [ok("config.device", what, "not given: HAMi's built-in knownMigGeometries table is used "
                                                      "(--device-config FILE checks a ConfigMap)")], builtin
    text, problem = _read(path, what)
    if problem is not None or text is None:
        return [problem] if problem else [], builtin
    try:
        config = parse_device_config(text, path)
    except InputError as exc:
        bad = fail("config.device", what, str(exc), "correct that field; the agent refuses to start on "
                                                                "it (exit 2)", scope="input")
        return [bad], builtin
    checks = [ok("config.device", what, f"{path}: parsed, {len(config.rules)} knownMigGeometries "
                                                    "entries")]
    # The key sets of HAMi's config structs live with the parser (hami_mig.mig.config_keys).
    keys = [f"{k.path} (did you mean {k.nearest}?)" for k in config.unknown_keys]
    if keys:
        checks.append(_unknown(what, path, keys))
    errors = [f for f in validate_device_config(config, catalogue) if f.level == "error"]
    if errors:
        checks.append(warn("config.device", what,
                           f"{len(errors)} geometry(ies) do not fit the GPU model they name and would be skipped; "
                           f"first: {errors[0].message}",
                           "correct them (`hami-mig plan --device-config FILE` names each)", scope="input"))
    return checks, config


def node_config_checks(path: str | None, node: str, split_count: int) -> tuple[list[Check], NodeConfig | None]:
    """config.json's entry for this node: its operating mode, filtered GPUs and per-GPU modes."""
    what = "config.json"
    if path is None:
        return [ok("config.node", what, "not given: the agent runs this node in its --default-mode (mig)")], None
    text, problem = _read(path, what)
    if problem is not None or text is None:
        return [problem] if problem else [], None
    try:
        entries = parse_node_configs(text, split_count)
        entry = node_config_for(text, node, split_count)
    except InputError as exc:
        return [fail("config.node", what, str(exc), "correct that field; the agent refuses to start on it "
                                                           "(exit 2)", scope="input")], None
    checks: list[Check] = []
    listed = any(e.name == node for e in entries)
    if not listed:
        checks.append(ok("config.node", what, f"{path}: node {node} is not listed: the agent runs it in its "
                                                     "--default-mode (mig)"))
    elif entry.operating_mode != MODE_MIG and not any(g.mode == MODE_MIG for g in entry.gpu_modes):
        checks.append(warn("config.node", what, f"{path}: node {node} runs in {entry.operating_mode} mode: "
                           "hami-mig manages none of its GPUs",
                           f"set node {node}'s operatingmode to mig (or give GPUs mig in its gpus list)",
                           scope="input"))
    else:
        filtered = len(entry.filter_uuids) + len(entry.filter_indices)
        checks.append(ok("config.node", what, f"{path}: node {node} runs in {entry.operating_mode} mode, "
                                                     f"split count {entry.device_split_count}, {filtered} filtered "
                                                     f"GPU(s), {len(entry.gpu_modes)} per-GPU mode(s)"))
    keys = unknown_keys(_json(text), NODE_CONFIG, fold_case=True)
    if keys:
        checks.append(_unknown(what, path, keys))
    return checks, entry if listed else None


def _json(text: str) -> Any:
    return json.loads(text) if text.strip() else {}
