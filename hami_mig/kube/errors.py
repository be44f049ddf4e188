"""API-server failures as our own types, so callers decide retry vs. give up without knowing urllib3."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from typing import Any

import urllib3
from kubernetes.client.exceptions import ApiException

from hami_mig.errors import HamiMigError


class ApiError(HamiMigError):
    """The API server refused or failed a call; `verb`/`resource` say which call, `status` the HTTP code."""

    retryable = False

    def __init__(self, message: str, *, verb: str = "", resource: str = "", status: int = 0) -> None:
        self.verb = verb
        self.resource = resource
        self.status = status
        super().__init__(message)


class ApiUnavailable(ApiError):
    """Try again later: connection refused or reset, timeout, 5xx, 429 (`retry_after_s` when the server said)."""

    retryable = True

    def __init__(
        self, message: str, *, verb: str = "", resource: str = "", status: int = 0, retry_after_s: float | None = None
    ) -> None:
        super().__init__(message, verb=verb, resource=resource, status=status)
        self.retry_after_s = retry_after_s


class ApiConflict(ApiError):
    """409: the object changed since it was read (stale resourceVersion) or already exists; re-read and retry."""


class ApiNotFound(ApiError):
    """404: the object (or namespace) does not exist."""


class ApiForbidden(ApiError):
    """401/403: the service account lacks an RBAC permission; the message names the verb and resource to grant."""


class ApiGone(ApiError):
    """410: a watch's resourceVersion is too old; list again and watch from the list's resourceVersion."""


class ApiRejected(ApiError):
    """Other 4xx (400, 415, 422 ...): the request itself is wrong; retrying the same request will not help."""


@contextlib.contextmanager
def api_call(
    verb: str, resource: str, target: str = "", *, subresource: str = "", quiet: threading.Event | None = None
) -> Iterator[None]:
    """Turn ApiException / urllib3 / socket failures of one call into our ApiError subclasses."""
    what = f"{resource}/{subresource}" if subresource else resource
    call = f"{verb} {what}{' ' + target if target else ''}"
    try:
        yield
    except ApiException as exc:
        raise from_api_exception(exc, verb, what, call) from None
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        if quiet is not None and quiet.is_set():
            return
        raise ApiUnavailable(f"{call}: API server unreachable: {exc}", verb=verb, resource=what) from None


def from_api_exception(exc: ApiException, verb: str, what: str, call: str) -> ApiError:
    status = int(exc.status or 0)
    message = _server_message(exc)
    common: dict[str, Any] = {"verb": verb, "resource": what, "status": status}
    if status == 0 or status >= 500 or status == 429:
        return ApiUnavailable(f"{call}: API server unavailable ({status}): {message}", retry_after_s=_retry_after(exc),
                              **common)
    if status == 409:
        return ApiConflict(f"{call}: conflict: {message}", **common)
    if status == 404:
        return ApiNotFound(f"{call}: not found: {message}", **common)
    if status == 401:
        return ApiForbidden(
            f"{call}: unauthorized: the API server rejected hami-mig's credentials (token or client certificate): "
            f"{message}",
            **common,
        )
    if status == 403:
        return ApiForbidden(
            f"{call}: forbidden: the service account may not {verb} {what} in the core API group; "
            f"grant it in hami-mig's ClusterRole (server said: {message})",
            **common,
        )
    if status == 410:
        return ApiGone(f"{call}: resourceVersion too old, list again: {message}", **common)
    return ApiRejected(f"{call}: rejected ({status}): {message}", **common)


def _server_message(exc: ApiException) -> str:
    body = exc.body
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    if isinstance(body, str) and body:
        try:
            status = json.loads(body)
        except ValueError:
            return body[:300]
        if isinstance(status, dict) and status.get("message"):
            return str(status["message"])
    return str(exc.reason or "no message")


def _retry_after(exc: ApiException) -> float | None:
    headers = exc.headers or {}
    value = headers.get("Retry-After") if hasattr(headers, "get") else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
