"""The simulator's call accounting and latency mode: counts another process can read, delays per kind."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from hami_mig.errors import InputError
from hami_mig.testing.nvmlsim import LATENCY_ENV, NvmlSim, from_env, parse_latency, read_call_stats


def test_counts_of_another_process_are_readable_while_it_runs(tmp_path: Path) -> None:
    state = tmp_path / "sim.json"
    mine = NvmlSim("A100-SXM4-80GB:2", state_file=state)
    mine.nvmlInit()
    mine.nvmlDeviceGetCount()
    child = textwrap.dedent(f"""
        from hami_mig.testing.nvmlsim import NvmlSim
        sim = NvmlSim("A100-SXM4-80GB:2", state_file={str(state)!r})
        sim.nvmlInit()
        for i in range(2):
            sim.nvmlDeviceGetHandleByIndex(i)
        try:
            sim.nvmlDeviceGetHandleByIndex(7)  # a failing call counts too
        except Exception:
            pass
    """)
    subprocess.run([sys.executable, "-c", child], check=True, timeout=60)
    stats = read_call_stats(state)
    assert stats.counts["nvmlDeviceGetHandleByIndex"] == 3
    assert stats.counts["nvmlInit"] == 2  # this process and the child
    assert stats.counts["nvmlDeviceGetCount"] == 1
    assert stats.total() == 6 and stats.total("mutating") == 0 and stats.total("query") == 6
    assert mine.call_stats() == stats  # the same reading through the simulator object
    before = stats
    mine.nvmlDeviceGetCount()
    delta = read_call_stats(state) - before
    assert delta.counts == {"nvmlDeviceGetCount": 1}


def test_mutating_calls_are_counted_by_kind_with_their_time(tmp_path: Path) -> None:
    state = tmp_path / "sim.json"
    sim = NvmlSim("A100-SXM4-80GB:1", state_file=state)
    sim.nvmlInit()
    sim.set_latency(0.05, ["create"])
    handle = sim.nvmlDeviceGetHandleByIndex(0)
    profile = sim.nvmlDeviceGetGpuInstanceProfileInfo(handle, 0)
    sim.nvmlDeviceCreateGpuInstance(handle, profile.id)
    stats = read_call_stats(state)
    assert stats.total("create") == 1 and stats.total("mutating") == 1
    assert stats.seconds("create") >= 0.05  # the latency is part of the call's time
    assert stats.seconds("create_gi") == stats.seconds("create")


def test_latency_resolves_function_names_before_kinds() -> None:
    sim = NvmlSim("A100-SXM4-80GB:1")
    sim.set_latency(0.001, ["query"])
    sim.set_latency(0.05, ["create", "destroy"])
    sim.set_latency(0.0, ["nvmlDeviceGetCount"])
    delay = sim.faults._delay
    assert delay("nvmlDeviceGetUUID") == 0.001
    assert delay("nvmlDeviceGetCount") == 0.0
    assert delay("nvmlGpuInstanceCreateComputeInstance") == 0.05
    assert delay("nvmlGpuInstanceDestroy") == 0.05
    assert delay("nvmlDeviceSetMigMode") == 0.0  # mutating but neither a create nor a destroy
    with pytest.raises(ValueError, match="unknown call kind 'creates'"):
        sim.set_latency(1.0, ["creates"])


def test_latency_spec_parsing() -> None:
    assert parse_latency("query=1ms,create=50ms,destroy=0.05s") == [
        ("query", 0.001), ("create", 0.05), ("destroy", 0.05)]
    assert parse_latency("250us") == [(None, 0.00025)]
    for bad in ("query=fast", "creates=1ms", "query=-1ms", "", "query=1ms,"):
        with pytest.raises(InputError) as info:
            parse_latency(bad)
        assert str(info.value).startswith("HAMI_MIG_SIM_LATENCY")


def test_from_env_applies_the_latency_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(LATENCY_ENV, "query=2ms,mutating=30ms")
    sim = from_env("A100-SXM4-80GB:1")
    assert sim.faults._delay("nvmlDeviceGetName") == 0.002
    assert sim.faults._delay("nvmlGpuInstanceDestroy") == 0.03
    monkeypatch.setenv(LATENCY_ENV, "query=slow")
    with pytest.raises(InputError):
        from_env("A100-SXM4-80GB:1")
