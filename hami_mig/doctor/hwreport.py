"""Put scripts/gpu-check.sh's outputs (doctor, devices, the conformance suite, nvidia-smi) into one JSON report."""

from __future__ import annotations

import json
import re
import sys
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hami_mig import __version__

_TEXT_LIMIT = 20_000


def _text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace")[:_TEXT_LIMIT]
    except OSError:
        return None


def _rc(work: Path, step: str) -> int | None:
    text = _text(work / f"{step}.rc")
    return int(text.strip()) if text and text.strip().lstrip("-").isdigit() else None


def command_output(work: Path, step: str) -> dict[str, Any]:
    """One command's exit code, its JSON (or its text when it printed no JSON) and its stderr."""
    out: dict[str, Any] = {"exit_code": _rc(work, step)}
    text = _text(work / f"{step}.json")
    try:
        out["output"] = json.loads(text) if text else None
    except json.JSONDecodeError:
        out["output_text"] = text
    err = _text(work / f"{step}.err")
    if err:
        out["stderr"] = err
    return out


def conformance(work: Path) -> dict[str, Any]:
    """pytest's JUnit XML: each test's outcome and message, and the totals."""
    out: dict[str, Any] = {"exit_code": _rc(work, "conformance"), "tests": []}
    try:
        root = ET.parse(work / "conformance.xml").getroot()
    except (OSError, ET.ParseError):
        out["output_text"] = _text(work / "conformance.txt")
        return out
    for case in root.iter("testcase"):
        outcome, message = "passed", ""
        for tag in ("failure", "error", "skipped"):
            found = case.find(tag)
            if found is not None:
                outcome = {"failure": "failed", "error": "error", "skipped": "skipped"}[tag]
                message = (found.get("message") or found.text or "")[:2000]
        out["tests"].append({"name": case.get("name", ""), "outcome": outcome, "message": message})
    totals = {k: sum(1 for t in out["tests"] if t["outcome"] == k) for k in ("passed", "failed", "error", "skipped")}
    out.update(totals)
    out["ran_on_hardware"] = any(t["outcome"] in ("passed", "failed", "error") and "[real]" in t["name"]
                                 for t in out["tests"])
    return out


def default_name(devices: dict[str, Any]) -> str:
    """`gpu-check-NVIDIA-A100-SXM4-80GB.json`: the report is filed under the GPU model it checked."""
    gpus = (devices.get("output") or {}).get("gpus") or []
    models = sorted({str(g.get("name") or "unknown") for g in gpus}) or ["no-gpu"]
    slug = "+".join(re.sub(r"[^A-Za-z0-9.]+", "-", m).strip("-") for m in models)
    return f"gpu-check-{slug}.json"


def assemble(work: Path, backend: str) -> dict[str, Any]:
    devices = command_output(work, "devices")
    report = {
        "hami_mig_version": __version__,
        "created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "backend": backend,
        "host": {name: (_text(work / f"{name}.txt") or "").strip() or None
                 for name in ("hostname", "kernel", "nvidia-smi-L", "nvidia-smi-lgip", "nvidia-smi-lgipp")},
        "doctor": command_output(work, "doctor"),
        "devices": devices,
        "conformance": conformance(work),
    }
    return report


def passed(report: dict[str, Any]) -> bool:
    """Every step ran and succeeded; on real GPUs the conformance suite must also have run there."""
    steps = (report["doctor"]["exit_code"], report["devices"]["exit_code"], report["conformance"]["exit_code"])
    ok = all(rc == 0 for rc in steps)
    return ok and (report["backend"] == "sim" or bool(report["conformance"].get("ran_on_hardware")))


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m hami_mig.doctor.hwreport WORKDIR BACKEND [REPORT]`: write the report, print its path."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) not in (2, 3) or args[1] not in ("nvml", "sim"):
        print("usage: python -m hami_mig.doctor.hwreport WORKDIR nvml|sim [REPORT.json]", file=sys.stderr)
        return 2
    report = assemble(Path(args[0]), args[1])
    target = Path(args[2]) if len(args) == 3 and args[2] else Path(default_name(report["devices"]))
    target.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(target)
    return 0 if passed(report) else 1


if __name__ == "__main__":
    sys.exit(main())
