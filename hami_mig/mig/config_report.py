"""Everything wrong with a device-config file, in one report: what `check-config`, `plan` and `explain`
refuse (exit 2) and what they only mention. The running agent reads the same file leniently instead."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hami_mig.mig.catalogue import Catalogue
from hami_mig.mig.config_keys import UnknownKey
from hami_mig.mig.geometry import DeviceConfig, Finding, parse_device_config, validate_device_config


@dataclass(frozen=True)
class ConfigReport:
    """`errors` make the file unusable offline; `warnings` and `notes` do not."""

    source: str
    config: DeviceConfig
    errors: tuple[str, ...]
    warnings: tuple[str, ...]
    notes: tuple[str, ...]
    findings: tuple[Finding, ...] = ()

    @property
    def unknown_keys(self) -> tuple[UnknownKey, ...]:
        return self.config.unknown_keys

    def warnings_by_rule(self) -> list[tuple[str, int]]:
        """(first warning, how many more) per knownMigGeometries entry: HAMi's own table has dozens alike."""
        groups: dict[int | None, list[str]] = {}
        for f in self.findings:
            if f.level == "warning":
                groups.setdefault(f.rule, []).append(f.message)
        return [(messages[0], len(messages) - 1) for messages in groups.values()]

    def first_error(self) -> str:
        """One line: the first error and how many more there are."""
        more = len(self.errors) - 1
        return self.errors[0] + (f" (and {more} more; `hami-mig check-config {self.source}` lists them)"
                                 if more > 0 else "")

    def to_json(self) -> dict[str, Any]:
        return {
            "file": self.source, "ok": not self.errors, "errors": list(self.errors),
            "warnings": list(self.warnings), "notes": list(self.notes),
            "unknown_keys": [{"path": u.path, "key": u.key, "nearest": u.nearest} for u in self.unknown_keys],
            "rules": [{"models": list(r.models), "geometries": [g.describe() for g in r.geometries]}
                      for r in self.config.rules],
        }


def check_device_config(text: str, source: str, catalogue: Catalogue) -> ConfigReport:
    """Parse and check a device-config; InputError (YamlSyntaxError for broken YAML) when it cannot be read."""
    config = parse_device_config(text, source)
    findings = validate_device_config(config, catalogue)
    return ConfigReport(
        source=source,
        config=config,
        errors=tuple([u.message for u in config.unknown_keys] + [f.message for f in findings if f.level == "error"]),
        warnings=tuple(f.message for f in findings if f.level == "warning"),
        notes=tuple(f.message for f in findings if f.level == "info"),
        findings=tuple(findings),
    )
