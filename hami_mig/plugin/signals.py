"""SIGTERM handling, so a pod deletion stops the plugin cleanly instead of leaving a dead socket behind."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterable
from types import FrameType

from .server import DevicePluginServer

logger = logging.getLogger(__name__)

DEFAULT_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class ShutdownRequest:
    """Set by a signal handler; the main thread waits on it and then shuts things down in order."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.signal: int | None = None

    def set(self, signum: int) -> None:
        """Records the signal and wakes waiters."""
        self.signal = signum
        self._event.set()

    def is_set(self) -> bool:
        """Whether a shutdown was requested."""
        return self._event.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Blocks until a shutdown is requested or ``timeout`` passes."""
        return self._event.wait(timeout)


def install_signal_handlers(signals: Iterable[int] = DEFAULT_SIGNALS) -> ShutdownRequest:
    """Makes ``signals`` request a shutdown instead of killing the process; call from the main thread."""
    request = ShutdownRequest()

    def handler(signum: int, frame: FrameType | None) -> None:
        logger.info("received %s; shutting down", signal.Signals(signum).name)
        request.set(signum)

    for signum in signals:
        signal.signal(signum, handler)
    return request


def serve_until_signal(server: DevicePluginServer, grace: float = 5.0,
                       signals: Iterable[int] = DEFAULT_SIGNALS) -> int:
    """Starts ``server``, blocks until a signal arrives, stops it with ``grace``; returns the signal number."""
    request = install_signal_handlers(signals)
    server.start()
    while not request.wait(0.5):
        pass
    server.stop(grace)
    assert request.signal is not None
    return request.signal
