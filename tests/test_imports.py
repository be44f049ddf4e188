"""Every module of the package imports: a broken import fails here, it never turns into a skipped test."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import hami_mig

MODULES = sorted(m.name for m in pkgutil.walk_packages(hami_mig.__path__, prefix="hami_mig.")
                 if not m.name.endswith(".__main__"))  # those run the CLI when imported


def test_the_package_has_its_modules() -> None:
    assert {"hami_mig.cli.plan", "hami_mig.mig.planner", "hami_mig.agent.core", "hami_mig.mig.config_keys"} <= set(
        MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_module_imports(name: str) -> None:
    importlib.import_module(name)
