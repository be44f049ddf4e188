"""Import the official `kubernetes` client by the parts hami-mig uses, not by its package `__init__`s.

`import kubernetes` runs `kubernetes/__init__.py`, which imports the dynamic client (with a JSON-schema
validator), websocket streams, leader election, informers and utils; `kubernetes.config` imports the
kubeconfig loader even in a pod that only reads its service account. A node agent needs none of them:
about 9 MiB of its memory. `install()` registers both packages so that a name is imported when it is
first used (`kubernetes.watch`, `config.load_kube_config` ...); a name this map does not know runs the
package's own `__init__` first, so every use still works.

The kubeconfig loader itself imports `requests_oauthlib` (and with it requests, oauthlib, charset
detection: about 5 MiB) for one thing, refreshing an OIDC token. Loading it here defers those two
imports to the first use of `OAuth2Session` or of an oauthlib error class (`_DEFERRED`).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable
from types import ModuleType
from typing import Any

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


# module imported by the kubeconfig loader -> the names it takes from it with `from ... import`.
_DEFERRED: dict[str, tuple[str, ...]] = {"requests_oauthlib": ("OAuth2Session",), "oauthlib": (), "oauthlib.oauth2": ()}
KUBE_CONFIG = "kubernetes.config.kube_config"


class _Later(ModuleType):
    """Stands for a module until an attribute is used; then the real module answers."""

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__"):
            raise AttributeError(attr)
        return getattr(importlib.import_module(self.__name__), attr)


def _later_callable(module: str, attr: str) -> Callable[..., Any]:
    def call(*args: Any, **kwargs: Any) -> Any:
        return getattr(importlib.import_module(module), attr)(*args, **kwargs)
    call.__name__ = attr
    return call


def _import_kube_config() -> ModuleType:
    """The kubeconfig loader, its OIDC dependencies imported when an OIDC token is first refreshed."""
    if KUBE_CONFIG in sys.modules or any(name in sys.modules for name in _DEFERRED):
        return importlib.import_module(KUBE_CONFIG)
    stand_ins: dict[str, ModuleType] = {name: _Later(name) for name in _DEFERRED}
    for name, names in _DEFERRED.items():
        for attr in names:
            setattr(stand_ins[name], attr, _later_callable(name, attr))
    stand_ins["oauthlib"].oauth2 = stand_ins["oauthlib.oauth2"]  # type: ignore[attr-defined]
    sys.modules.update(stand_ins)
    try:
        return importlib.import_module(KUBE_CONFIG)
    finally:  # a later `import requests_oauthlib` gets the real module
        for name, module in stand_ins.items():
            if sys.modules.get(name) is module:
                del sys.modules[name]


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
            full = f"{name}.{sub}"
            found = _import_kube_config() if full == KUBE_CONFIG else importlib.import_module(full)
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
