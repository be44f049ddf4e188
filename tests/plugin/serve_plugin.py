"""A tiny plugin process for the SIGTERM test: python -m tests.plugin.serve_plugin DIR [ALLOCATE_DELAY]."""

from __future__ import annotations

import logging
import sys

from hami_mig.plugin import DevicePluginServer, MutableDeviceSource, serve_until_signal

from .conftest import RESOURCE, SOCKET, EchoAllocator, make_devices


def main() -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(name)s: %(message)s")
    directory = sys.argv[1]
    delay = float(sys.argv[2]) if len(sys.argv) > 2 else 0.0
    server = DevicePluginServer(RESOURCE, SOCKET, MutableDeviceSource(make_devices(4)), EchoAllocator(delay),
                                directory)
    serve_until_signal(server, grace=5.0)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
