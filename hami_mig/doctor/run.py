"""Run every check in order: NVML, each GPU, the node's files, the cluster, the ConfigMaps."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hami_mig.agent.cdi import DEFAULT_CDI_DIR
from hami_mig.doctor import configmaps, gpus, instances, library, node
from hami_mig.doctor.cluster import ClusterView, read_cluster, records_hint
from hami_mig.doctor.readonly import ReadOnlyNvml, ReadOnlyViolation
from hami_mig.doctor.report import Check, Report, fail
from hami_mig.errors import HamiMigError
from hami_mig.mig.catalogue import default_catalogue
from hami_mig.nvml import NvmlBackend
from hami_mig.nvml import errors as E
from hami_mig.plugin import DEFAULT_KUBELET_DIR


@dataclass(frozen=True)
class DoctorOptions:
    """On a simulated node only the paths given are checked: it has no kubelet, CDI directory or cluster."""

    node_name: str
    simulated: bool = False
    kubelet_dir: str | None = None
    cdi_dir: str | None = None
    device_config: str | None = None
    node_config: str | None = None
    kubeconfig: str | None = None
    proc_root: str | None = None

    @property
    def procfs(self) -> str:
        return self.proc_root or "/proc"


def run_doctor(module: Any, options: DoctorOptions) -> Report:
    """Every check, in display order; NVML is reached only through the read-only guard."""
    catalogue = default_catalogue()
    config_checks, device_config = configmaps.device_config_checks(options.device_config, catalogue)
    node_checks, node_config = configmaps.node_config_checks(options.node_config, options.node_name,
                                                             device_config.device_split_count)
    config_checks += node_checks
    cluster = _cluster(options)
    facts = gpus.NodeFacts(catalogue, device_config, node_config, cluster.holdings, cluster.records_hint,
                           options.procfs)
    report = Report(facts={"node": options.node_name, "backend": "sim" if options.simulated else "nvml"})
    backend, guard, checks = library.open_nvml(module)
    report.add(checks)
    if backend is not None and guard is not None:
        try:
            report.add(_nvml_checks(backend, guard, facts, report))
        finally:
            backend.shutdown()
    report.add(_node_checks(options))
    report.add(cluster.checks)
    report.add(config_checks)
    return report


def _cluster(options: DoctorOptions) -> ClusterView:
    if options.simulated and options.kubeconfig is None:
        return ClusterView(records_hint=records_hint(options.node_name))
    return read_cluster(options.kubeconfig, options.node_name, explicit=options.kubeconfig is not None)


def _nvml_checks(backend: NvmlBackend, guard: ReadOnlyNvml, facts: gpus.NodeFacts, report: Report) -> list[Check]:
    out: list[Check] = []
    try:
        versions, report.facts["nvml"] = library.version_checks(guard)
        out += versions
        out += library.symbol_checks(guard)
        out += _gpu_checks(backend, guard, facts)
    except ReadOnlyViolation as exc:
        out.append(_violation(exc))
    return out


def _violation(exc: ReadOnlyViolation) -> Check:
    return fail("nvml.read-only", "NVML", f"stopped: {exc}", "report this as a hami-mig bug; nothing was changed")


def _gpu_checks(backend: NvmlBackend, nvml: Any, facts: gpus.NodeFacts) -> list[Check]:
    try:
        count = backend.gpu_count()
    except nvml.NVMLError as exc:
        return [fail("gpu.count", "GPUs", f"cannot be counted: {E.describe_nvml(exc)}",
                     "make `nvidia-smi -L` work on this node first")]
    if count == 0:
        return [fail("gpu.count", "GPUs", "NVML sees no GPU",
                     "check `nvidia-smi -L`; in a container, use the NVIDIA runtime and NVIDIA_VISIBLE_DEVICES=all")]
    out: list[Check] = []
    capable = 0
    for index in range(count):
        checks, is_capable = _one_gpu(backend, nvml, index, facts)
        out += checks
        capable += is_capable
    if not capable:
        out.append(fail("gpu.count", "GPUs", f"none of the {count} GPU(s) is MIG-capable: hami-mig has nothing to "
                                             "manage here", "run hami-mig on nodes with A30, A100, H100, H20, H200, "
                                                            "GH200 or B200 GPUs"))
    return out


def _one_gpu(backend: NvmlBackend, nvml: Any, index: int, facts: gpus.NodeFacts) -> tuple[list[Check], bool]:
    dev = backend.device(index)
    checks = [gpus.identity(dev)]
    if dev.mig_mode == "unknown":
        return checks, False
    try:
        capable = gpus.mig_capable(nvml, backend, index)
        checks.append(gpus.mig_mode(dev, capable, facts))
        if dev.model is not None:
            checks += [gpus.profile_table(dev, facts), gpus.geometry_entry(dev, facts)]
            checks += instances.instance_checks(dev, facts)
        checks.append(instances.holder_check(backend, dev, facts.proc_root))
    except ReadOnlyViolation:
        raise
    except (HamiMigError, nvml.NVMLError) as exc:
        detail = E.describe_nvml(exc) if E.is_nvml_error(exc, nvml) else str(exc)
        checks.append(fail("gpu.read", gpus.subject(dev), f"could not be read: {detail}",
                           f"check `nvidia-smi -q -i {index}`; run the doctor as root"))
        return checks, False
    return checks, capable


def _node_checks(options: DoctorOptions) -> list[Check]:
    out: list[Check] = []
    real = not options.simulated
    if real or options.kubelet_dir is not None:
        out += node.kubelet_check(Path(options.kubelet_dir or DEFAULT_KUBELET_DIR))
    if real or options.cdi_dir is not None:
        out += [node.cdi_check(Path(options.cdi_dir or DEFAULT_CDI_DIR)), node.toolkit_check()]
    if real or options.proc_root is not None:
        out.append(instances.client_check(options.procfs))
    return out
