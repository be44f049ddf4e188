"""The register annotation the REAL agent publishes (NVML simulator, fake API server), read by ports of HAMi's own
decoders: v2.9's UnMarshalNodeDevices for the default format, v2.7.1's DecodeNodeDevices for `legacy`."""

from __future__ import annotations

import pytest

from hami_mig.agent.config import AgentConfig
from hami_mig.kube.annotations import NODE_REGISTER
from hami_mig.kube.register import RegisterFormat
from hami_mig.testing.cluster import SimCluster
from tests.hami_go import GoDecodeError, decode_node_devices_v271, unmarshal_node_devices_v29


@pytest.mark.parametrize("fmt", ["json", "legacy"])
def test_agent_register_is_what_that_hami_generation_reads(fmt: RegisterFormat) -> None:
    config = AgentConfig(node_name="n", reconcile_interval_s=3600, events=False, register_format=fmt)
    with SimCluster(config, sim_gpus="A100-SXM4-80GB:2") as cluster:
        text = cluster.api.get_node("n")["metadata"]["annotations"][NODE_REGISTER]
        uuids = [d.uuid for d in cluster.backend.devices()]
    if fmt == "json":
        devices = unmarshal_node_devices_v29(text)
        # getAPIDevices (plugin/register.go, v2.9.0) keeps a name that starts with "NVIDIA" as it is
        want_type = "NVIDIA A100-SXM4-80GB"
        assert text.startswith('[{"id":"') and '"devicepairscore":{}' in text
        with pytest.raises(GoDecodeError):
            decode_node_devices_v271(text)
    else:
        devices = decode_node_devices_v271(text)
        want_type = "NVIDIA-NVIDIA A100-SXM4-80GB"  # getAPIDevices at v2.7.1: fmt.Sprintf("%v-%v", "NVIDIA", Model)
        assert text.endswith(":") and not text.startswith("[")
    assert [(d.ID, d.Index, d.Count, d.Devcore, d.Type, d.Mode, d.Health) for d in devices] == [
        (uuid, i, 10, 100, want_type, "mig", True) for i, uuid in enumerate(uuids)]
    assert all(d.Devmem == 81920 for d in devices)
