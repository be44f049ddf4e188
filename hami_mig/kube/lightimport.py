"""Import the official `kubernetes` client by the parts hami-mig uses, not by its package `__init__`s.

`import kubernetes` runs `kubernetes/__init__.py`, which imports the dynamic client (with a JSON-schema
validator), websocket streams, leader election, informers and utils; `kubernetes.config` imports the
kubeconfig loader (requests, oauthlib) even in a pod that only reads its service account. A node
agent needs none of them: about 9 MiB of its memory. `install()` registers both packages so that a
name is imported when it is first used (`kubernetes.watch`, `config.load_kube_config` ...); a name
this map does not know runs the package's own `__init__` first, so every use still works.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from types import ModuleType

_LAZY: dict[str, dict[str, str]] = {
    "kubernetes": {name: name for name in
                   ("client", "config", "dynamic", "watch", "stream", "utils", "leaderelection", "informer")},
    "kubernetes.config": {
        "ConfigException": "config_exception",
        "load_incluster_config": "incluster_config",
        **{name: "kube_config" for name in ("KUBE_CONFIG_DEFAULT_LOCATION", "list_kube_config_contexts",
                                            "load_kube_config", "load_kube_config_from_dict",
                                            "new_client_from_config", "new_client_from_config_dict")},
    },
}


def _lazy_package(name: str, exports: dict[str, str]) -> ModuleType | None:
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None or not spec.submodule_search_locations:
        return None
    module = importlib.util.module_from_spec(spec)  # the package, its __init__ not run yet
    loader = spec.loader
    done: list[bool] = []

    def attribute(attr: str) -> object:
        sub = exports.get(attr)
        if sub is not None:
            found = importlib.import_module(f"{name}.{sub}")
            return found if sub == attr else getattr(found, attr)
        if not done and (not attr.startswith("__") or attr == "__version__"):  # what the __init__ defines
            done.append(True)
            loader.exec_module(module)
            return getattr(module, attr)
        raise AttributeError(f"module {name!r} has no attribute {attr!r}")

    setattr(module, "__getattr__", attribute)  # noqa: B010  # PEP 562: a module's own __getattr__
    return module


def install() -> None:
    """Register the lazy packages, unless something imported `kubernetes` already (then nothing changes)."""
    if "kubernetes" in sys.modules:
        return
    for name, exports in _LAZY.items():
        module = _lazy_package(name, exports)
        if module is None:
            return
        sys.modules[name] = module
        parent, _, child = name.rpartition(".")
        if parent:
            setattr(sys.modules[parent], child, module)
