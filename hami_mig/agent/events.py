"""Kubernetes Events that explain each Allocate (on the pod) and MIG-mode / coexistence changes (on the Node),
posted off the Allocate path and rate-limited."""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hami_mig.agent.messages import allocated_message
from hami_mig.kube.client import KubeClient, ObjectRef
from hami_mig.kube.errors import ApiError
from hami_mig.kube.node_events import create_node_event

if TYPE_CHECKING:
    from hami_mig.agent.allocate import Outcome

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class NodeRef:
    """An Event about the Node rather than a pod."""

    name: str


class EventPoster:
    """A bounded queue and one worker thread: Allocate never waits for the API server to take an Event."""

    def __init__(self, kube: KubeClient, *, enabled: bool = True, per_second: float = 5.0, burst: int = 20,
                 policy: str = "hami") -> None:
        self._kube = kube
        self._policy = policy
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
        self._post(outcome.target.pod, reason, allocated_message(outcome, self._policy), "Normal")

    def failed_for(self, pod: Any, message: str) -> None:
        self._post(pod, "MIGAllocateFailed", " ".join(message.split()), "Warning")

    def node(self, node: str, reason: str, message: str, kind: str = "Normal") -> None:
        """An Event on the Node (MIG mode changes, stepping back from the GPU Operator)."""
        self._post(NodeRef(node), reason, " ".join(message.split()), kind)

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
            about, reason, message, kind = item
            try:
                if isinstance(about, NodeRef):
                    create_node_event(self._kube, about.name, reason, message, type=kind)  # type: ignore[arg-type]
                    continue
                meta = about.metadata
                self._kube.create_event(ObjectRef(meta.namespace, meta.name, meta.uid or ""), reason, message,
                                        type=kind)  # type: ignore[arg-type]
            except ApiError as exc:
                log.debug("event %s not posted: %s", reason, exc)
            except Exception:  # a malformed object must not kill the worker; Allocate never sees this
                log.exception("event %s not posted", reason)

    def close(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=2)
