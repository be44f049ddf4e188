"""Constants and name rules of the kubelet device plugin API v1beta1, shared by server and fake kubelet."""

from __future__ import annotations

import os
import re
from pathlib import Path

API_VERSION = "v1beta1"
SUPPORTED_VERSIONS = (API_VERSION,)
DEFAULT_KUBELET_DIR = Path("/var/lib/kubelet/device-plugins")
KUBELET_SOCKET = "kubelet.sock"
HEALTHY = "Healthy"
UNHEALTHY = "Unhealthy"
MAX_DEVICE_ID_LENGTH = 63
# grpcio refuses to bind unix socket paths of 106 bytes or more.
MAX_SOCKET_PATH_BYTES = 105

_NAME_PART = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_DNS_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS_SUBDOMAIN = re.compile(rf"^{_DNS_LABEL}(\.{_DNS_LABEL})*$")


class InvalidResourceNameError(ValueError):
    """The kubelet would refuse this extended resource name at registration."""


class SocketPathError(ValueError):
    """A plugin socket path grpcio cannot bind or the kubelet cannot dial."""


def resource_name_problem(name: str) -> str | None:
    """Why the kubelet rejects ``name`` as an extended resource name, or None if it accepts it.

    Mirrors ``v1helper.IsExtendedResourceName``: ``domain/name``, not native (no ``kubernetes.io/``),
    and ``requests.<name>`` must be a qualified name (DNS-1123 subdomain prefix, 63-char name part).
    """
    if "/" not in name:
        return "it has no domain: use 'domain/name', e.g. 'example.com/gpu'"
    if "kubernetes.io/" in name:
        return "the kubernetes.io/ domain is reserved for native resources"
    if name.startswith("requests."):
        return "it must not start with 'requests.'"
    parts = f"requests.{name}".split("/")
    if len(parts) != 2:
        return "it must contain exactly one '/'"
    prefix, part = parts
    if name.startswith("/"):
        return "the domain part is empty"
    if len(prefix) > 253 or not _DNS_SUBDOMAIN.match(prefix):
        return "the domain must be a lowercase DNS-1123 subdomain of at most 244 characters"
    if not part:
        return "the name part after '/' is empty"
    if len(part) > 63:
        return f"the name part {part!r} is longer than 63 characters"
    if not _NAME_PART.match(part):
        return f"the name part {part!r} must be alphanumeric, '-', '_' or '.', starting and ending alphanumeric"
    return None


def validate_resource_name(name: str) -> str:
    """Returns ``name`` if the kubelet would accept it, else raises InvalidResourceNameError."""
    problem = resource_name_problem(name)
    if problem is not None:
        raise InvalidResourceNameError(f"resource name {name!r} is invalid: {problem}")
    return name


def validate_socket_name(name: str) -> str:
    """Returns ``name`` if it is a plain file name usable as a Register endpoint."""
    if not name or name in (".", "..") or "/" in name or "\0" in name:
        raise SocketPathError(f"socket name {name!r} must be a plain file name inside the kubelet directory")
    if name == KUBELET_SOCKET:
        raise SocketPathError(f"socket name {name!r} is the kubelet's own socket; pick another name")
    return name


def socket_path(directory: str | os.PathLike[str], name: str) -> Path:
    """Absolute path of socket ``name`` in ``directory``, checked against the unix socket length limit."""
    path = Path(directory).absolute() / validate_socket_name(name)
    if len(os.fsencode(path)) > MAX_SOCKET_PATH_BYTES:
        raise SocketPathError(
            f"socket path {str(path)!r} is {len(os.fsencode(path))} bytes; unix sockets need at most "
            f"{MAX_SOCKET_PATH_BYTES}: use a shorter directory or socket name"
        )
    return path


def unix_address(path: Path) -> str:
    """gRPC address of an absolute socket path: ``unix:///abs/path`` (relative forms bind nothing)."""
    if not path.is_absolute():
        raise SocketPathError(f"socket path {str(path)!r} must be absolute")
    return f"unix://{path}"
