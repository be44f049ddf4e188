"""API-server failures as our own types, so callers decide retry vs. give up without knowing urllib3."""

from __future__ import annotations

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
