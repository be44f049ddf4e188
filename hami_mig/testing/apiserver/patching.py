"""The three PATCH flavours the API server accepts: JSON merge (RFC 7386), strategic merge, JSON patch (RFC 6902)."""

from __future__ import annotations

import copy
from typing import Any

from hami_mig.testing.apiserver.errors import StatusError

# Lists merged by key under strategic merge (the Kubernetes `patchMergeKey` of the core types we model).
MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "volumes": "name",
    "env": "name",
    "volumeMounts": "mountPath",
    "ports": "containerPort",
    "conditions": "type",
    "imagePullSecrets": "name",
    "ownerReferences": "uid",
    "addresses": "type",
    "taints": "key",
    "containerStatuses": "name",
    "initContainerStatuses": "name",
}
# Lists of scalars that strategic merge unions instead of replacing.
MERGED_SCALAR_LISTS = {"finalizers"}


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge recursively, null deletes, anything else (lists too) replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def strategic_merge_patch(target: Any, patch: Any, field: str = "") -> Any:
    """Kubernetes strategic merge for the shapes we model: maps merge, keyed lists merge by key, `$patch` honoured."""
    if isinstance(patch, list):
        return _merge_list(target, patch, field)
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    directive = patch.get("$patch")
    if directive == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    if directive == "delete":
        return None
    if directive is not None:
        raise StatusError(400, f"unknown patch type {directive!r}")
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if key.startswith("$setElementOrder/") or key == "$retainKeys":
            continue
        if key.startswith("$deleteFromPrimitiveList/"):
            name = key.split("/", 1)[1]
            result[name] = [item for item in result.get(name) or [] if item not in (value or [])]
            continue
        if value is None:
            result.pop(key, None)
            continue
        merged = strategic_merge_patch(result.get(key), value, key)
        if merged is None:
            result.pop(key, None)
        else:
            result[key] = merged
    return result


def _merge_list(target: Any, patch: list[Any], field: str) -> list[Any]:
    current = list(target) if isinstance(target, list) else []
    if field in MERGED_SCALAR_LISTS:
        return current + [copy.deepcopy(item) for item in patch if item not in current]
    key = MERGE_KEYS.get(field)
    if key is None or not all(isinstance(item, dict) for item in patch):
        return copy.deepcopy(patch)
    result = [copy.deepcopy(item) for item in current]
    for item in patch:
        if key not in item:
            raise StatusError(400, f"map in list {field!r} has no merge key {key!r}")
        same = (i for i, old in enumerate(result) if isinstance(old, dict) and old.get(key) == item[key])
        position = next(same, None)
        if item.get("$patch") == "delete":
            if position is not None:
                result.pop(position)
            continue
        if position is None:
            result.append(strategic_merge_patch({}, item, field))
        else:
            result[position] = strategic_merge_patch(result[position], item, field)
    return result


def json_patch(target: Any, operations: Any) -> Any:
    """RFC 6902 add / remove / replace / test / copy / move; a failed op is 422 like the real server."""
    if not isinstance(operations, list):
        raise StatusError(400, "json patch must be a list of operations")
    document = copy.deepcopy(target)
    for op in operations:
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise StatusError(400, f"invalid json patch operation {op!r}")
        kind, path = op["op"], _pointer(op["path"])
        if kind == "test":
            if _get(document, path) != op.get("value"):
                raise StatusError(422, f"testing value {op['path']} failed")
        elif kind == "remove":
            document = _remove(document, path, op["path"])
        elif kind == "add":
            document = _add(document, path, copy.deepcopy(op.get("value")), op["path"])
        elif kind == "replace":
            document = _remove(document, path, op["path"])
            document = _add(document, path, copy.deepcopy(op.get("value")), op["path"])
        elif kind in ("copy", "move"):
            source = _pointer(op.get("from", ""))
            value = copy.deepcopy(_get(document, source))
            if kind == "move":
                document = _remove(document, source, op["from"])
            document = _add(document, path, value, op["path"])
        else:
            raise StatusError(400, f"unknown json patch op {kind!r}")
    return document


_MISSING = object()


def _pointer(text: Any) -> list[str]:
    if not isinstance(text, str) or (text and not text.startswith("/")):
        raise StatusError(400, f"invalid JSON pointer {text!r}")
    return [part.replace("~1", "/").replace("~0", "~") for part in text.split("/")[1:]] if text else []


def _get(document: Any, path: list[str]) -> Any:
    node = document
    for part in path:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return _MISSING
    return node


def _parent(document: Any, path: list[str], text: str) -> Any:
    parent = _get(document, path[:-1])
    if parent is _MISSING or not isinstance(parent, dict | list):
        raise StatusError(422, f"doc is missing path: {text!r}")
    return parent


def _add(document: Any, path: list[str], value: Any, text: str) -> Any:
    if not path:
        return value
    parent, last = _parent(document, path, text), path[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif last == "-":
        parent.append(value)
    elif last.isdigit() and int(last) <= len(parent):
        parent.insert(int(last), value)
    else:
        raise StatusError(422, f"invalid index in path {text!r}")
    return document


def _remove(document: Any, path: list[str], text: str) -> Any:
    if not path:
        return None
    parent, last = _parent(document, path, text), path[-1]
    if isinstance(parent, dict) and last in parent:
        del parent[last]
    elif isinstance(parent, list) and last.isdigit() and int(last) < len(parent):
        parent.pop(int(last))
    else:
        raise StatusError(422, f"unable to remove nonexistent key: {text!r}")
    return document
