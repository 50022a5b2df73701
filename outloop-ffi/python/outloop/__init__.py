"""Outloop for Python: call approved HTTP actions through the broker without holding the key.

The broker runs in-process through ``liboutloop`` (the C ABI in ``outloop-ffi``): it resolves
the workspace's tenant, checks policy, applies the credential host-side, and returns a redacted
result; every attempt is audited. No call here ever returns a raw secret.

    >>> import outloop
    >>> with outloop.Broker(workspace="/home/me/clients/acme") as b:   # doctest: +SKIP
    ...     r = b.call("hubspot.contacts.list", limit=5)
    ...     print(r["status"], r["redactions"])
    ...     r = b.request("hubspot", "GET", "/crm/v3/objects/contacts", query={"limit": 5})

The library is found through ``$OUTLOOP_FFI_LIB``, else beside this package, else in the cargo
target dir. Errors are raised as the classes of :mod:`outloop.errors`, re-exported here.
"""

from __future__ import annotations

import ctypes
import json
import os
import threading
from typing import Any, Callable, Dict, List, Optional, Tuple, Union, overload

from . import _ffi
from .errors import (
    ApprovalRequired,
    AuditError,
    BackendError,
    ConfigError,
    DeniedError,
    InternalError,
    InvalidJson,
    InvalidParameter,
    InvalidReference,
    InvalidSecret,
    InvalidUtf8,
    IoError,
    NotFound,
    NullParameter,
    OutloopError,
    Panic,
    PermissionDenied,
    PolicyDenied,
    RateLimited,
    RequestError,
    SafetyRefused,
    Timeout,
    Unauthenticated,
    Unavailable,
    UnboundWorkspace,
    UnknownAction,
    Unsupported,
    UpstreamError,
    UpstreamUnreachable,
    UsageError,
    error_for,
)

__all__ = [
    "Broker", "abi_version", "library",
    "OutloopError", "RequestError", "DeniedError", "BackendError", "UpstreamError",
    "InternalError", "NullParameter", "InvalidUtf8", "Panic", "InvalidJson", "Unsupported",
    "ConfigError", "UsageError", "InvalidReference", "InvalidParameter", "UnknownAction",
    "UnboundWorkspace", "PolicyDenied", "ApprovalRequired", "NotFound", "Unauthenticated",
    "PermissionDenied", "RateLimited", "Unavailable", "Timeout", "UpstreamUnreachable",
    "SafetyRefused", "InvalidSecret", "AuditError", "IoError",
]

PathLike = Union[str, "os.PathLike[str]"]
JsonObject = Dict[str, Any]

_lib: Optional[ctypes.CDLL] = None
_lib_lock = threading.Lock()


def library() -> ctypes.CDLL:
    """The loaded ``liboutloop`` (loaded on first use). Raises ``OSError`` when not found."""
    global _lib
    with _lib_lock:
        if _lib is None:
            _lib = _ffi.load()
        return _lib


def abi_version() -> int:
    """The C ABI version of the loaded library."""
    return int(library().outloop_abi_version())


def _arg(value: Optional[Union[str, bytes]]) -> Tuple[Optional[bytes], int]:
    """A (pointer, length) pair: ``None`` is (NULL, 0); text is encoded as UTF-8."""
    if value is None:
        return None, 0
    data = value.encode("utf-8", "surrogateescape") if isinstance(value, str) else bytes(value)
    return data, len(data)


def _check(lib: ctypes.CDLL, status: int) -> None:
    """Raises the exception for a non-zero status, with this thread's last error message."""
    if status == 0:
        return
    raw = lib.outloop_last_error_message()
    message = raw.decode("utf-8", "replace") if raw else "(no message)"
    kind = lib.outloop_status_name(status).decode("ascii")
    raise error_for(status, kind, message)


def _take(lib: ctypes.CDLL, status: int, buf: ctypes.c_void_p, length: ctypes.c_size_t) -> bytes:
    """Checks ``status``, copies the returned buffer and frees it."""
    _check(lib, status)
    try:
        return ctypes.string_at(buf.value, length.value) if length.value else b""
    finally:
        lib.outloop_buffer_free(buf, length)


class Broker:
    """A broker over one host config and one workspace directory.

    Args:
        home: the Outloop home (holding ``config.toml``, the vault and the audit log), an
            absolute path; ``None`` uses ``$OUTLOOP_HOME``, else the platform directories.
        workspace: the directory requests come from; ``None`` is the current directory.
        tenant: the tenant the caller expects, or ``None``. Calls from a workspace bound to
            another tenant raise :class:`PolicyDenied` before any backend is touched.

    Raises:
        ConfigError, UsageError, IoError, ...: when the config or backends cannot be opened.
        OSError: when the library cannot be found.

    A ``Broker`` may be shared by threads (each call blocks its own thread). Use it as a context
    manager, or call :meth:`close` (not while another thread is inside a call on it); a
    closed broker raises ``ValueError``.
    """

    def __init__(
        self,
        home: Optional[PathLike] = None,
        workspace: Optional[PathLike] = None,
        *,
        tenant: Optional[str] = None,
    ) -> None:
        self._lib = library()
        self._tenant = tenant
        self._handle: Optional[ctypes.c_void_p] = None
        self._lock = threading.RLock()
        h, hl = _arg(os.fspath(home) if home is not None else None)
        w, wl = _arg(os.fspath(workspace) if workspace is not None else None)
        out = ctypes.c_void_p()
        _check(self._lib, self._lib.outloop_broker_open(h, hl, w, wl, ctypes.byref(out)))
        self._handle = out

    def __enter__(self) -> "Broker":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - never raise from a finalizer
            pass

    def close(self) -> None:
        """Frees the handle (zeroizing cached credentials). Idempotent."""
        with self._lock:
            handle, self._handle = self._handle, None
        if handle is not None:
            self._lib.outloop_broker_free(handle)

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._handle is None

    def _h(self) -> ctypes.c_void_p:
        h = self._handle
        if h is None:
            raise ValueError("the broker is closed")
        return h

    def _json_out(self, call: Callable[[ctypes.c_void_p, ctypes.c_size_t], int]) -> Any:
        buf, length = ctypes.c_void_p(), ctypes.c_size_t()
        data = _take(self._lib, call(ctypes.byref(buf), ctypes.byref(length)), buf, length)
        return json.loads(data.decode("utf-8"))

    def call(self, action: str, /, **params: Any) -> JsonObject:
        """Performs ``action`` with ``params`` (JSON-encodable values) for the workspace.

        Returns the redacted result, the object ``outloop call --json`` prints:
        ``{"action", "tenant", "status", "status_text", "headers", "body", "redactions"}``.
        Any upstream status is a result, not an error.

        Raises:
            PolicyDenied, UnboundWorkspace, ApprovalRequired: refused (no backend touched).
            UnknownAction, InvalidParameter: a bad request.
            BackendError subclasses: a credential could not be fetched.
            UpstreamError subclasses: the upstream failed or was refused.
        """
        h = self._h()
        a, al = _arg(action)
        p, pl = _arg(json.dumps(params))
        t, tl = _arg(self._tenant)
        return self._json_out(lambda o, n: self._lib.outloop_call(h, a, al, p, pl, t, tl, o, n))

    def actions(self) -> List[JsonObject]:
        """The actions and aliases this workspace may use, sorted by name: dicts with
        ``name``, ``kind`` (``action``/``alias``), ``description``, ``decision``
        (``allow``/``approve``) and ``params`` (a JSON Schema). Raises :class:`UnboundWorkspace`."""
        h = self._h()
        v = self._json_out(lambda o, n: self._lib.outloop_actions(h, o, n))
        return list(v["actions"])

    def explain(self, action: str, /, **params: Any) -> JsonObject:
        """The policy decision for ``action`` (or ``"alias:<name>"``) with ``params``, without
        a backend call or audit record: ``{"action", "workspace", "tenant", "decision",
        "rule", "reason"}``. A denial is returned, not raised.

        Raises:
            UnboundWorkspace, UnknownAction, InvalidParameter.
        """
        h = self._h()
        a, al = _arg(action)
        p, pl = _arg(json.dumps(params))
        return self._json_out(lambda o, n: self._lib.outloop_explain(h, a, al, p, pl, o, n))

    @overload
    def redact(self, data: str) -> str: ...
    @overload
    def redact(self, data: bytes) -> bytes: ...

    def redact(self, data: Union[str, bytes]) -> Union[str, bytes]:
        """Replaces every secret of the workspace's tenant in ``data`` with
        ``[REDACTED:<credential>]``; returns the same type it was given.

        Raises:
            UnboundWorkspace; BackendError subclasses when a credential cannot be fetched.
        """
        return self.redact_counted(data)[0]

    def redact_counted(self, data: Union[str, bytes]) -> Tuple[Union[str, bytes], int]:
        """As :meth:`redact`, also returning the number of replacements."""
        h = self._h()
        d, dl = _arg(data)
        buf, length, count = ctypes.c_void_p(), ctypes.c_size_t(), ctypes.c_size_t()
        status = self._lib.outloop_redact(
            h, d, dl, ctypes.byref(buf), ctypes.byref(length), ctypes.byref(count)
        )
        out = _take(self._lib, status, buf, length)
        if isinstance(data, str):
            return out.decode("utf-8", "surrogateescape"), count.value
        return out, count.value

    def request(
        self,
        alias: str,
        method: str,
        path: str,
        *,
        query: Optional[Union[str, Dict[str, Any]]] = None,
        headers: Optional[Dict[str, str]] = None,
        body: Optional[Union[str, bytes]] = None,
    ) -> JsonObject:
        """Sends ``method path`` through alias ``alias`` (``[aliases.<alias>]``: a pinned
        upstream) for the workspace, with the credential applied host-side.

        ``path`` is below the alias's base URL and starts with ``/``; ``query`` is a raw query
        string (without ``?``) or a dict (URL-encoded here); ``headers`` the request headers
        (``Authorization``, ``Cookie``, ``Proxy-*``, hop-by-hop and ``Host`` are dropped);
        ``body`` text (sent as UTF-8) or bytes (sent base64-encoded over the C ABI, arriving as
        the same bytes).

        Returns the redacted response, the object ``outloop call --json`` prints, with
        ``action`` = ``"alias:<alias>"``. Any upstream status is a result, not an error.

        Raises:
            PolicyDenied: the method and path match none of the alias's ``allow`` rules, policy
                denies it, or the handle names another tenant (no backend touched).
            UnknownAction: no such alias. InvalidParameter: a bad method, path (``..``,
                ``//``, backslashes), query or header.
            BackendError subclasses, UpstreamError subclasses: as for :meth:`call`.
        """
        h = self._h()
        req: Dict[str, Any] = {"alias": alias, "method": method, "path": path}
        if query is not None:
            if isinstance(query, dict):
                from urllib.parse import urlencode

                query = urlencode(query)
            req["query"] = query
        if headers:
            req["headers"] = dict(headers)
        if isinstance(body, bytes):
            import base64

            req["body_base64"] = base64.b64encode(body).decode("ascii")
        elif body is not None:
            req["body"] = body
        r, rl = _arg(json.dumps(req))
        t, tl = _arg(self._tenant)
        return self._json_out(
            lambda o, n: self._lib.outloop_alias_request(h, r, rl, t, tl, o, n)
        )

    def verify_audit(self) -> int:
        """Verifies the audit log's hash chain; returns the number of records checked.

        Raises:
            AuditError: naming the first line that does not verify.
        """
        n = ctypes.c_uint64()
        _check(self._lib, self._lib.outloop_audit_verify(self._h(), ctypes.byref(n)))
        return int(n.value)
