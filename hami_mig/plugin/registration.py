"""Registering with the kubelet, and how long to wait between failed attempts."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import grpc
import grpc.aio

from . import rpc
from .proto import api_pb2
from .protocol import API_VERSION, unix_address


class RegistrationError(Exception):
    """The kubelet could not be reached or refused the registration; the server retries."""


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with jitter, so plugins restarted together do not hammer the kubelet in step."""

    initial: float = 0.1
    factor: float = 2.0
    maximum: float = 5.0
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if self.initial <= 0 or self.factor < 1 or self.maximum < self.initial or not 0 <= self.jitter <= 1:
            raise ValueError(f"invalid backoff {self!r}: need initial > 0, factor >= 1, maximum >= initial, "
                             "0 <= jitter <= 1")

    def delay(self, failures: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after ``failures`` consecutive failures (>= 1)."""
        base = min(self.maximum, self.initial * self.factor ** max(0, failures - 1))
        spread = (rng or random).uniform(1.0 - self.jitter, 1.0)
        return base * spread


DEFAULT_BACKOFF = Backoff()


def register_request(resource_name: str, socket_name: str,
                     options: api_pb2.DevicePluginOptions) -> api_pb2.RegisterRequest:
    """The RegisterRequest for a plugin serving ``socket_name`` in the kubelet's directory."""
    return api_pb2.RegisterRequest(version=API_VERSION, endpoint=socket_name, resource_name=resource_name,
                                   options=options)


async def register_with_kubelet(kubelet_socket: Path, request: api_pb2.RegisterRequest, timeout: float) -> None:
    """One Register call; raises RegistrationError saying why it failed."""
    try:
        async with grpc.aio.insecure_channel(unix_address(kubelet_socket)) as channel:
            await rpc.register(channel, request, timeout)
    except grpc.aio.AioRpcError as error:
        raise RegistrationError(
            f"kubelet at {kubelet_socket} did not accept {request.resource_name}: "
            f"{error.code().name}: {error.details()}"
        ) from error
