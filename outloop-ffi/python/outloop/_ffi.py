"""Loading ``liboutloop`` and declaring its C ABI for ctypes (see ``outloop.h``)."""

from __future__ import annotations

import ctypes
import os
import sys
from pathlib import Path
from typing import List, Optional

#: The C ABI version these bindings were written for (``outloop_abi_version()``).
ABI_VERSION = 2

_NAMES = {"darwin": "liboutloop.dylib", "win32": "outloop.dll"}
LIB_NAME = _NAMES.get(sys.platform, "liboutloop.so")


def candidates() -> List[Path]:
    """Where the library is looked for, in order: ``$OUTLOOP_FFI_LIB``; beside this package;
    the cargo target dir (``$CARGO_TARGET_DIR`` or a ``target/`` above this file), debug
    before release."""
    out: List[Path] = []
    env = os.environ.get("OUTLOOP_FFI_LIB")
    if env:
        return [Path(env)]
    here = Path(__file__).resolve().parent
    out.append(here / LIB_NAME)
    targets: List[Path] = []
    if os.environ.get("CARGO_TARGET_DIR"):
        targets.append(Path(os.environ["CARGO_TARGET_DIR"]))
    targets.extend(p / "target" for p in here.parents)
    for t in targets:
        out.extend([t / "debug" / LIB_NAME, t / "release" / LIB_NAME])
    return out


def load(path: Optional[str] = None) -> ctypes.CDLL:
    """Loads the library (``path``, else the first of :func:`candidates` that exists) and
    declares its functions. Raises ``OSError`` when none is found or the ABI version differs."""
    paths = [Path(path)] if path else candidates()
    found = next((p for p in paths if p.is_file()), None)
    if found is None:
        raise OSError(
            f"{LIB_NAME} not found; set OUTLOOP_FFI_LIB or build it with "
            f"`cargo build -p outloop-ffi` (looked in: {', '.join(str(p) for p in paths)})"
        )
    lib = ctypes.CDLL(str(found))
    _declare(lib)
    got = lib.outloop_abi_version()
    if got != ABI_VERSION:
        raise OSError(f"{found} has C ABI version {got}; these bindings need {ABI_VERSION}")
    return lib


c_u8p = ctypes.c_char_p  # `const uint8_t *`: bytes go in as they are, with their length
c_size = ctypes.c_size_t
c_status = ctypes.c_int32
c_outbuf = ctypes.POINTER(ctypes.c_void_p)
c_outlen = ctypes.POINTER(ctypes.c_size_t)


def _declare(lib: ctypes.CDLL) -> None:
    def fn(name: str, restype, *argtypes) -> None:
        f = getattr(lib, name)
        f.restype = restype
        f.argtypes = list(argtypes)

    vp = ctypes.c_void_p
    fn("outloop_abi_version", ctypes.c_uint32)
    fn("outloop_status_name", ctypes.c_char_p, ctypes.c_int32)
    fn("outloop_last_error_message", ctypes.c_char_p)
    fn("outloop_broker_open", c_status, c_u8p, c_size, c_u8p, c_size, ctypes.POINTER(vp))
    fn("outloop_broker_free", None, vp)
    fn("outloop_buffer_free", None, vp, c_size)
    fn("outloop_call", c_status, vp, c_u8p, c_size, c_u8p, c_size, c_u8p, c_size, c_outbuf, c_outlen)
    fn("outloop_alias_request", c_status, vp, c_u8p, c_size, c_u8p, c_size, c_outbuf, c_outlen)
    fn("outloop_actions", c_status, vp, c_outbuf, c_outlen)
    fn("outloop_explain", c_status, vp, c_u8p, c_size, c_u8p, c_size, c_outbuf, c_outlen)
    fn("outloop_redact", c_status, vp, c_u8p, c_size, c_outbuf, c_outlen, ctypes.POINTER(c_size))
    fn("outloop_audit_verify", c_status, vp, ctypes.POINTER(ctypes.c_uint64))
    fn("outloop_debug_panic", c_status)
