"""The backend's MIG-mode change and the MIG device facts CDI needs, on the simulator."""

from __future__ import annotations

import pynvml
import pytest

from hami_mig.mig.plan import Operation
from hami_mig.nvml import HardwareError, NvmlBackend
from hami_mig.testing.nvmlsim import NvmlSim


def test_hopper_enables_at_once_ampere_stays_pending() -> None:
    sim = NvmlSim("A100-SXM4-80GB:1:mig-off,H100-SXM5-80GB:1:mig-off")
    with NvmlBackend(sim) as b:
        ampere = b.set_mig_mode(0, True)
        assert not ampere.active and ampere.is_pending
        assert ampere.activation_status == pynvml.NVML_ERROR_IN_USE
        assert "pending" in ampere.describe() and "never resets" in ampere.describe()
        assert b.device(0).mig_mode == "pending"
        hopper = b.set_mig_mode(1, True)
        assert hopper.active and hopper.describe().startswith("MIG mode enabled on GPU 1")
        assert b.device(1).mig_enabled
        sim.reset_gpu(0)
        assert b.device(0).mig_enabled


def test_disable_with_instances_is_refused_by_the_driver() -> None:
    sim = NvmlSim("H100-SXM5-80GB:1")
    with NvmlBackend(sim) as b:
        b.apply([Operation("create", 0, "1g.10gb", 0)])
        with pytest.raises(HardwareError, match=r"nvmlDeviceSetMigMode.*NVML_ERROR_IN_USE") as err:
            b.set_mig_mode(0, False)
        assert err.value.code == pynvml.NVML_ERROR_IN_USE
        b.apply([Operation("destroy", 0, "1g.10gb", 0)])
        assert b.set_mig_mode(0, False).active and b.device(0).mig_mode == "disabled"


def test_processes_keep_a_hopper_pending_too() -> None:
    sim = NvmlSim("H100-SXM5-80GB:1:mig-off")
    sim.set_gpu_processes(0, [31])
    with NvmlBackend(sim) as b:
        assert b.gpu_processes(0) == (31,)
        assert b.set_mig_mode(0, True).is_pending


def test_mig_device_nodes_and_minor(backend: NvmlBackend, sim: NvmlSim) -> None:
    sim.set_minor(1, 6)
    result = backend.apply([Operation("create", 1, "2g.20gb", 2)])
    rec = result.created[0].instance
    assert rec is not None and rec.mig_uuid
    nodes = backend.mig_device_nodes(rec.mig_uuid)
    assert (nodes.gpu_index, nodes.gpu_minor, nodes.gi_id, nodes.ci_id) == (1, 6, rec.gi_id, rec.ci_id)
    assert nodes.gpu_uuid == backend.handle(1)[1]
    assert backend.gpu_minor(0) == 0
    with pytest.raises(HardwareError, match="MIG-nope"):
        backend.mig_device_nodes("MIG-nope")


def test_holders_lists_nvml_processes(backend: NvmlBackend, sim: NvmlSim, tmp_path: object) -> None:
    mig = sim.add_instance(0, "1g.10gb", 3, pids=[500])
    sim.set_gpu_processes(0, [600])
    holders = backend.holders(0, proc_root="/nonexistent")
    assert [(h.pid, h.name, h.where) for h in holders] == [(500, "?", mig), (600, "?", "GPU 0")]
    sim.deny_process_queries(0)
    assert backend.gpu_processes(0) is None
