"""Kubelet restarts and lost streams: the plugin serves its socket again and re-registers quickly."""

from __future__ import annotations

import time
from pathlib import Path

from hami_mig.plugin import MutableDeviceSource
from hami_mig.testing.fake_kubelet import FakeKubelet

from .conftest import RESOURCE, SOCKET, ServerFactory, make_devices


def test_reregisters_within_a_second_of_a_kubelet_restart(kubelet: FakeKubelet, make_server: ServerFactory,
                                                         plugin_dir: Path) -> None:
    source = MutableDeviceSource(make_devices(4))
    server = make_server(source)
    first = kubelet.wait_for_registration(RESOURCE, 5)
    assert server.wait_registered(5)  # the kubelet's answer reached the plugin
    kubelet.wait_for_devices(RESOURCE, timeout=5)
    old = (plugin_dir / SOCKET).stat()

    kubelet.restart()
    kubelet_up = time.monotonic()
    again = kubelet.wait_for_registration(RESOURCE, 5, after=first)
    assert again.generation == first.generation + 1
    assert again.at - kubelet_up < 1.0
    new = (plugin_dir / SOCKET).stat()
    assert (new.st_ino, new.st_ctime_ns) != (old.st_ino, old.st_ctime_ns)  # re-created after the wipe
    devices = kubelet.wait_for_devices(RESOURCE, lambda d: len(d) == 4 and all(x.healthy for x in d), 5)
    assert len(devices) == 4
    assert kubelet.allocate(RESOURCE, ["d2"], timeout=5).container_responses
    source.set_health("d0", False)  # the new stream carries changes too
    kubelet.wait_for_devices(RESOURCE, lambda d: not d[0].healthy, 5)
    assert server.wait_registered(5) and server.registration_count == 2


def test_survives_many_restarts_in_a_row(kubelet: FakeKubelet, make_server: ServerFactory) -> None:
    server = make_server()
    last = kubelet.wait_for_registration(RESOURCE, 5)
    assert server.wait_registered(5)
    for _ in range(5):
        kubelet.restart()
        up = time.monotonic()
        last = kubelet.wait_for_registration(RESOURCE, 5, after=last)
        assert last.at - up < 1.0
        assert server.wait_registered(5)  # the answer reached the plugin before the next restart
    assert server.registration_count == 6
    assert kubelet.allocate(RESOURCE, ["d0"], timeout=5).container_responses


def test_kubelet_down_for_a_while(kubelet: FakeKubelet, make_server: ServerFactory) -> None:
    server = make_server()
    first = kubelet.wait_for_registration(RESOURCE, 5)
    kubelet.stop()
    deadline = time.monotonic() + 5
    while server.registered and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not server.registered  # readiness drops while no kubelet has us
    time.sleep(0.5)
    kubelet.start()
    kubelet.wait_for_registration(RESOURCE, 2, after=first)
    assert server.wait_registered(2)


def test_new_kubelet_socket_alone_triggers_registration(kubelet: FakeKubelet, make_server: ServerFactory,
                                                        plugin_dir: Path) -> None:
    make_server()
    first = kubelet.wait_for_registration(RESOURCE, 5)
    before = (plugin_dir / SOCKET).stat()
    kubelet.restart(clean_sockets=False)
    kubelet.wait_for_registration(RESOURCE, 2, after=first)
    after = (plugin_dir / SOCKET).stat()
    assert (after.st_ino, after.st_ctime_ns) == (before.st_ino, before.st_ctime_ns)  # same socket, new registration


def test_own_socket_deleted_is_served_again(kubelet: FakeKubelet, make_server: ServerFactory,
                                            plugin_dir: Path) -> None:
    make_server()
    first = kubelet.wait_for_registration(RESOURCE, 5)
    (plugin_dir / SOCKET).unlink()
    again = kubelet.wait_for_registration(RESOURCE, 2, after=first)
    assert again.generation == first.generation
    assert (plugin_dir / SOCKET).is_socket()
    assert kubelet.allocate(RESOURCE, ["d1"], timeout=5).container_responses


def test_lost_stream_leads_to_registering_again(kubelet: FakeKubelet, make_server: ServerFactory) -> None:
    """The kubelet never reopens a stream that ended: only a new registration brings the devices back."""
    make_server(stream_loss_grace=0.3)
    first = kubelet.wait_for_registration(RESOURCE, 5)
    kubelet.wait_for_devices(RESOURCE, timeout=5)
    kubelet.disconnect(RESOURCE)
    assert not any(d.healthy for d in kubelet.devices(RESOURCE))
    kubelet.wait_for_registration(RESOURCE, 3, after=first)
    kubelet.wait_for_devices(RESOURCE, lambda d: all(x.healthy for x in d), 5)
