"""Exceptions raised by the Outloop broker, one class per status code of the C ABI.

Every exception derives from :class:`OutloopError` and carries ``status`` (the C ABI number),
``kind`` (its stable snake_case name, e.g. ``"policy_denied"``) and the library's one-line
message, which never holds a secret. The classes are grouped as the ``outloop`` command's exit
codes are: :class:`RequestError` (2), :class:`DeniedError` (3), :class:`BackendError` (4),
:class:`UpstreamError` (5) and :class:`InternalError` (1).
"""

from __future__ import annotations

from typing import Dict, Type


class OutloopError(Exception):
    """Base of every Outloop error.

    Attributes:
        status: the C ABI status number (see ``outloop.h``).
        kind: the status's stable name, e.g. ``"policy_denied"``.
        message: the library's one-line message (no secret).
    """

    status: int
    kind: str
    message: str

    def __init__(self, status: int, kind: str, message: str) -> None:
        super().__init__(f"{kind}: {message}")
        self.status = status
        self.kind = kind
        self.message = message


class RequestError(OutloopError):
    """The request or the host config is malformed (exit code 2)."""


class DeniedError(OutloopError):
    """The request was refused by tenant resolution or policy (exit code 3)."""


class BackendError(OutloopError):
    """A secret backend failed or refused (exit code 4)."""


class UpstreamError(OutloopError):
    """The upstream was unreachable, timed out, or a safety check refused it (exit code 5)."""


class InternalError(OutloopError):
    """A bug, an audit failure or a local I/O failure (exit code 1); status ``internal``."""


class NullParameter(RequestError):
    """A required pointer was NULL (status 1); a binding bug if it ever reaches Python."""


class InvalidUtf8(RequestError):
    """A text argument was not valid UTF-8 (status 2)."""


class Panic(InternalError):
    """The library caught a panic at its boundary (status 3); nothing was returned."""


class InvalidJson(RequestError):
    """The parameters were not a JSON object (status 4)."""


class Unsupported(RequestError):
    """The operation is not supported by this version of the broker (status 5)."""


class ConfigError(RequestError):
    """The host config is malformed or inconsistent (status 100)."""


class UsageError(RequestError):
    """An argument is malformed (status 101)."""


class InvalidReference(RequestError):
    """A secret reference cannot be parsed (status 102)."""


class InvalidParameter(RequestError):
    """An action parameter is missing, unknown, malformed or out of range (status 103)."""


class UnknownAction(RequestError):
    """No action or alias by that name exists (status 104)."""


class UnboundWorkspace(DeniedError):
    """The workspace is bound to no tenant (status 105)."""


class PolicyDenied(DeniedError):
    """Policy denied the request, or it named another tenant (status 106)."""


class ApprovalRequired(DeniedError):
    """Policy holds the request for a human's approval (status 107)."""


class NotFound(BackendError):
    """The backend has no secret at that reference (status 108)."""


class Unauthenticated(BackendError):
    """The backend needs a login, or the login failed (status 109)."""


class PermissionDenied(BackendError):
    """The backend refused access to the secret (status 110)."""


class RateLimited(BackendError):
    """The backend or upstream asked to slow down (status 111)."""


class Unavailable(BackendError):
    """The backend or upstream is unreachable or not configured here (status 112)."""


class Timeout(UpstreamError):
    """The backend or upstream did not answer in time (status 113)."""


class UpstreamUnreachable(UpstreamError):
    """The upstream could not be reached (status 114)."""


class SafetyRefused(UpstreamError):
    """A safety check refused the request or response (status 115)."""


class InvalidSecret(BackendError):
    """A secret value cannot be used (status 116)."""


class AuditError(InternalError):
    """The audit log could not be written or does not verify (status 117)."""


class IoError(InternalError):
    """A local file or OS operation failed (status 118)."""


#: Status number -> exception class. Numbers are fixed by the C ABI and never reused.
BY_STATUS: Dict[int, Type[OutloopError]] = {
    1: NullParameter,
    2: InvalidUtf8,
    3: Panic,
    4: InvalidJson,
    5: Unsupported,
    100: ConfigError,
    101: UsageError,
    102: InvalidReference,
    103: InvalidParameter,
    104: UnknownAction,
    105: UnboundWorkspace,
    106: PolicyDenied,
    107: ApprovalRequired,
    108: NotFound,
    109: Unauthenticated,
    110: PermissionDenied,
    111: RateLimited,
    112: Unavailable,
    113: Timeout,
    114: UpstreamUnreachable,
    115: SafetyRefused,
    116: InvalidSecret,
    117: AuditError,
    118: IoError,
    119: InternalError,
}


def error_for(status: int, kind: str, message: str) -> OutloopError:
    """The exception for a non-zero status; unknown numbers give a plain :class:`OutloopError`."""
    return BY_STATUS.get(status, OutloopError)(status, kind, message)
