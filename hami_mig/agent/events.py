"""Kubernetes Events that explain each Allocate, posted off the Allocate path and rate-limited."""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import TYPE_CHECKING, Any

from hami_mig.kube.client import KubeClient, ObjectRef
from hami_mig.kube.errors import ApiError

if TYPE_CHECKING:
    from hami_mig.agent.allocate import Outcome

log = logging.getLogger(__name__)


class EventPoster:
    """A bounded queue and one worker thread: Allocate never waits for the API server to take an Event."""

    def __init__(self, kube: KubeClient, *, enabled: bool = True, per_second: float = 5.0, burst: int = 20) -> None:
        self._kube = kube
        self._enabled = enabled
        self._queue: queue.Queue[tuple[Any, str, str, str] | None] = queue.Queue(maxsize=256)
        self._rate = per_second
        self._tokens = float(burst)
        self._burst = burst
        self._last = time.monotonic()
        self._thread: threading.Thread | None = None
        self.dropped = 0

    def allocated(self, outcome: Outcome) -> None:
        reason = "MIGReshaped" if outcome.reshaped else "MIGAllocated"
        devices = ", ".join(outcome.mig_uuids)
        message = f"container {outcome.target.container}: {'; '.join(outcome.decision.notes)} -> {devices}"
        self._post(outcome.target.pod, reason, message, "Normal")

    def failed_for(self, pod: Any, message: str) -> None:
        self._post(pod, "MIGAllocateFailed", message, "Warning")

    def _post(self, pod: Any, reason: str, message: str, kind: str) -> None:
        if not self._enabled:
            return
        now = time.monotonic()
        self._tokens = min(self._burst, self._tokens + (now - self._last) * self._rate)
        self._last = now
        if self._tokens < 1:
            self.dropped += 1
            return
        self._tokens -= 1
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name="hami-mig-events", daemon=True)
            self._thread.start()
        try:
            self._queue.put_nowait((pod, reason, message, kind))
        except queue.Full:
            self.dropped += 1

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            pod, reason, message, kind = item
            meta = pod.metadata
            try:
                self._kube.create_event(ObjectRef(meta.namespace, meta.name, meta.uid or ""), reason, message,
                                        type=kind)  # type: ignore[arg-type]
            except ApiError as exc:
                log.debug("event %s for %s/%s not posted: %s", reason, meta.namespace, meta.name, exc)

    def close(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=2)
