//! Outloop's C ABI: the broker behind an opaque handle, for C, Python, Node and any language
//! with a C FFI. The header is `outloop-ffi/include/outloop.h`, generated from this file by a
//! pinned cbindgen (see `scripts/test-ffi.sh`).
//!
//! # Conventions (every export follows them)
//!
//! This section is the header's preamble too (`header` in `outloop-ffi/cbindgen.toml`): change
//! both together.
//!
//! - **Status codes.** Every fallible export returns an [`outloop_status`]: `OUTLOOP_OK` (0) on
//!   success, else one code per error kind. Numbers are explicit and never reused; a kind
//!   added later gets a new number.
//! - **Last error, per thread.** Every export that returns an [`outloop_status`] sets the
//!   calling thread's last error: cleared on `OUTLOOP_OK`, set to a one-line message on any
//!   other status. Read it with [`outloop_last_error_message`] on the same thread, before the
//!   next `outloop_*` call on that thread. Messages never hold a secret.
//! - **Inputs** are a pointer and a length in bytes (no NUL terminator needed). Text inputs
//!   must be UTF-8 (`OUTLOOP_INVALID_UTF8` otherwise). A NULL pointer with length 0 means
//!   "absent" where an input is optional; a NULL pointer is `OUTLOOP_NULL_PARAMETER` where it
//!   is required, or whenever its length is not 0.
//! - **Outputs** go to out-parameters, which are written only on `OUTLOOP_OK`; on any other
//!   status they are left untouched. Every buffer the library returns is freed with
//!   [`outloop_buffer_free`], passing the length it came with; a handle with
//!   [`outloop_broker_free`]. Returned buffers are followed by one NUL byte (not counted in
//!   the length), so JSON output can be read as a C string.
//! - **Panics** never cross the boundary: each export catches them and returns
//!   `OUTLOOP_PANIC`. The library stays usable afterwards.
//! - **Blocking.** Calls that do I/O block the calling thread; the handle owns a small tokio
//!   runtime (two worker threads) that drives them. Do not call them from inside a tokio
//!   runtime's async context (that panics and is reported as `OUTLOOP_PANIC`).
//!
//! # From Rust
//!
//! Rust programs use the broker directly rather than this ABI; the README's five lines:
//!
//! ```no_run
//! # use outloop_core::{broker::{Broker, CallRequest}, config::{HostConfig, Paths}};
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let cfg = HostConfig::load(&Paths::from_env()?)?;
//! let backends = outloop_backends::from_config(&cfg)?;
//! let broker = Broker::builder(cfg).backends(backends).build()?;
//! let req = CallRequest { workspace: std::env::current_dir()?, action: "hubspot.contacts.list".into(), ..Default::default() };
//! let result = broker.call(req).await?;   // result.body is redacted; result.redactions counts
//! # Ok(()) }
//! ```

use std::cell::RefCell;
use std::ffi::{CString, c_char};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use outloop_core::action::RawParams;
use outloop_core::audit::AuditLog;
use outloop_core::broker::{AliasRequest, Broker, CallRequest};
use outloop_core::config::{HostConfig, Paths};
use outloop_core::{Error, ErrorKind};

/// The ABI version of this library. Incremented on every incompatible change of the C ABI.
///
/// Version 1: the broker handle, calls, status codes and per-thread last error.
/// Version 2: `outloop_alias_request` takes one request JSON object (alias, method, path,
/// query, headers, body) and a tenant, and performs the request.
pub const ABI_VERSION: u32 = 2;

/// The result of an export. `OUTLOOP_OK` is 0; every other value names what went wrong.
///
/// Numbers are explicit and never reused. 1–99 are errors of the C boundary itself;
/// 100–198 mirror the broker's error kinds one to one; 199 is a broker error kind newer than
/// this ABI (treat it as an internal error).
#[repr(i32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(non_camel_case_types)]
pub enum outloop_status {
    /// Success; the out-parameters were written.
    OUTLOOP_OK = 0,
    /// A required pointer was NULL, or a NULL pointer came with a non-zero length.
    OUTLOOP_NULL_PARAMETER = 1,
    /// A text input was not valid UTF-8.
    OUTLOOP_INVALID_UTF8 = 2,
    /// A panic was caught at the boundary (a bug); nothing was returned.
    OUTLOOP_PANIC = 3,
    /// A JSON input did not parse, or was not a JSON object.
    OUTLOOP_INVALID_JSON = 4,
    /// The operation exists in the ABI but not in this build of the broker (no export of ABI
    /// version 2 returns it; kept so the number is never reused).
    OUTLOOP_UNSUPPORTED = 5,
    /// The host config is malformed or inconsistent.
    OUTLOOP_CONFIG = 100,
    /// An argument is malformed (e.g. a relative home directory).
    OUTLOOP_USAGE = 101,
    /// A secret reference cannot be parsed or represented.
    OUTLOOP_INVALID_REFERENCE = 102,
    /// An action parameter is missing, unknown, malformed or out of range.
    OUTLOOP_INVALID_PARAMETER = 103,
    /// No action or alias by that name exists in the host config.
    OUTLOOP_UNKNOWN_ACTION = 104,
    /// The workspace is not bound to any tenant.
    OUTLOOP_UNBOUND_WORKSPACE = 105,
    /// Policy denied the request, or it named another tenant than the workspace's.
    OUTLOOP_POLICY_DENIED = 106,
    /// Policy holds the request for a human's approval, which was not given.
    OUTLOOP_APPROVAL_REQUIRED = 107,
    /// The backend has no secret at that reference.
    OUTLOOP_NOT_FOUND = 108,
    /// The backend needs a login, or the login failed.
    OUTLOOP_UNAUTHENTICATED = 109,
    /// The backend refused access to that secret.
    OUTLOOP_PERMISSION_DENIED = 110,
    /// The backend or upstream asked to slow down.
    OUTLOOP_RATE_LIMITED = 111,
    /// The backend or upstream cannot be reached or is not configured here.
    OUTLOOP_UNAVAILABLE = 112,
    /// The backend or upstream did not answer in time.
    OUTLOOP_TIMEOUT = 113,
    /// The upstream could not be reached (connection refused, DNS, TLS).
    OUTLOOP_UPSTREAM_UNREACHABLE = 114,
    /// A safety check refused the request or response (private egress, size cap, encoding).
    OUTLOOP_SAFETY_REFUSED = 115,
    /// A secret value cannot be used (empty, below the redaction floor).
    OUTLOOP_INVALID_SECRET = 116,
    /// The audit log could not be written or does not verify.
    OUTLOOP_AUDIT = 117,
    /// A local file or OS operation failed.
    OUTLOOP_IO = 118,
    /// An invariant did not hold inside the broker (a bug).
    OUTLOOP_INTERNAL = 119,
    /// A broker error kind newer than this ABI; treat as internal.
    OUTLOOP_OTHER = 199,
}

use outloop_status::*;

impl outloop_status {
    /// The status for a broker error kind.
    pub fn from_kind(kind: ErrorKind) -> Self {
        match kind {
            ErrorKind::Config => OUTLOOP_CONFIG,
            ErrorKind::Usage => OUTLOOP_USAGE,
            ErrorKind::InvalidReference => OUTLOOP_INVALID_REFERENCE,
            ErrorKind::InvalidParameter => OUTLOOP_INVALID_PARAMETER,
            ErrorKind::UnknownAction => OUTLOOP_UNKNOWN_ACTION,
            ErrorKind::UnboundWorkspace => OUTLOOP_UNBOUND_WORKSPACE,
            ErrorKind::PolicyDenied => OUTLOOP_POLICY_DENIED,
            ErrorKind::ApprovalRequired => OUTLOOP_APPROVAL_REQUIRED,
            ErrorKind::NotFound => OUTLOOP_NOT_FOUND,
            ErrorKind::Unauthenticated => OUTLOOP_UNAUTHENTICATED,
            ErrorKind::PermissionDenied => OUTLOOP_PERMISSION_DENIED,
            ErrorKind::RateLimited { .. } => OUTLOOP_RATE_LIMITED,
            ErrorKind::Unavailable => OUTLOOP_UNAVAILABLE,
            ErrorKind::Timeout => OUTLOOP_TIMEOUT,
            ErrorKind::UpstreamUnreachable => OUTLOOP_UPSTREAM_UNREACHABLE,
            ErrorKind::SafetyRefused => OUTLOOP_SAFETY_REFUSED,
            ErrorKind::InvalidSecret => OUTLOOP_INVALID_SECRET,
            ErrorKind::Audit => OUTLOOP_AUDIT,
            ErrorKind::Io => OUTLOOP_IO,
            ErrorKind::Internal => OUTLOOP_INTERNAL,
            _ => OUTLOOP_OTHER,
        }
    }

    /// The stable snake_case name: `ok`, `null_parameter`, …, and the broker kinds' own names
    /// (`policy_denied`, `not_found`, …).
    pub fn name(self) -> &'static str {
        self.name_c().to_str().unwrap_or("unknown")
    }

    fn name_c(self) -> &'static std::ffi::CStr {
        match self {
            OUTLOOP_OK => c"ok",
            OUTLOOP_NULL_PARAMETER => c"null_parameter",
            OUTLOOP_INVALID_UTF8 => c"invalid_utf8",
            OUTLOOP_PANIC => c"panic",
            OUTLOOP_INVALID_JSON => c"invalid_json",
            OUTLOOP_UNSUPPORTED => c"unsupported",
            OUTLOOP_CONFIG => c"config",
            OUTLOOP_USAGE => c"usage",
            OUTLOOP_INVALID_REFERENCE => c"invalid_reference",
            OUTLOOP_INVALID_PARAMETER => c"invalid_parameter",
            OUTLOOP_UNKNOWN_ACTION => c"unknown_action",
            OUTLOOP_UNBOUND_WORKSPACE => c"unbound_workspace",
            OUTLOOP_POLICY_DENIED => c"policy_denied",
            OUTLOOP_APPROVAL_REQUIRED => c"approval_required",
            OUTLOOP_NOT_FOUND => c"not_found",
            OUTLOOP_UNAUTHENTICATED => c"unauthenticated",
            OUTLOOP_PERMISSION_DENIED => c"permission_denied",
            OUTLOOP_RATE_LIMITED => c"rate_limited",
            OUTLOOP_UNAVAILABLE => c"unavailable",
            OUTLOOP_TIMEOUT => c"timeout",
            OUTLOOP_UPSTREAM_UNREACHABLE => c"upstream_unreachable",
            OUTLOOP_SAFETY_REFUSED => c"safety_refused",
            OUTLOOP_INVALID_SECRET => c"invalid_secret",
            OUTLOOP_AUDIT => c"audit",
            OUTLOOP_IO => c"io",
            OUTLOOP_INTERNAL => c"internal",
            OUTLOOP_OTHER => c"other",
        }
    }
}

/// Every status, for lookups by number.
const ALL_STATUSES: [outloop_status; 27] = [
    OUTLOOP_OK,
    OUTLOOP_NULL_PARAMETER,
    OUTLOOP_INVALID_UTF8,
    OUTLOOP_PANIC,
    OUTLOOP_INVALID_JSON,
    OUTLOOP_UNSUPPORTED,
    OUTLOOP_CONFIG,
    OUTLOOP_USAGE,
    OUTLOOP_INVALID_REFERENCE,
    OUTLOOP_INVALID_PARAMETER,
    OUTLOOP_UNKNOWN_ACTION,
    OUTLOOP_UNBOUND_WORKSPACE,
    OUTLOOP_POLICY_DENIED,
    OUTLOOP_APPROVAL_REQUIRED,
    OUTLOOP_NOT_FOUND,
    OUTLOOP_UNAUTHENTICATED,
    OUTLOOP_PERMISSION_DENIED,
    OUTLOOP_RATE_LIMITED,
    OUTLOOP_UNAVAILABLE,
    OUTLOOP_TIMEOUT,
    OUTLOOP_UPSTREAM_UNREACHABLE,
    OUTLOOP_SAFETY_REFUSED,
    OUTLOOP_INVALID_SECRET,
    OUTLOOP_AUDIT,
    OUTLOOP_IO,
    OUTLOOP_INTERNAL,
    OUTLOOP_OTHER,
];

/// A failure on its way to the caller: a status and a one-line message without secrets.
struct Failure {
    status: outloop_status,
    message: String,
}

impl Failure {
    fn new(status: outloop_status, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Self::new(outloop_status::from_kind(e.kind()), e.to_string())
    }
}

thread_local! {
    static LAST_ERROR: RefCell<Option<CString>> = const { RefCell::new(None) };
}

fn set_last_error(message: Option<String>) {
    let c = message.map(|m| {
        // Interior NULs cannot appear in a C string; they are replaced, never truncated.
        CString::new(m.replace('\0', "\u{FFFD}")).unwrap_or_default()
    });
    // `try_with` fails only while the thread is being torn down; then nobody can read it.
    let _ = LAST_ERROR.try_with(|e| *e.borrow_mut() = c);
}

/// Runs `f` behind the panic boundary and records the thread's last error.
fn boundary(export: &str, f: impl FnOnce() -> Result<(), Failure>) -> outloop_status {
    let result = catch_unwind(AssertUnwindSafe(f));
    let (status, message) = match result {
        Ok(Ok(())) => (OUTLOOP_OK, None),
        Ok(Err(fail)) => (fail.status, Some(fail.message)),
        // The payload is not shown: a panic message is not vetted for secrets.
        Err(_) => (
            OUTLOOP_PANIC,
            Some(format!(
                "{export}: a panic was caught at the C boundary (a bug in outloop); nothing was returned"
            )),
        ),
    };
    set_last_error(message);
    status
}

fn null(what: &str) -> Failure {
    Failure::new(OUTLOOP_NULL_PARAMETER, format!("`{what}` is NULL"))
}

/// Reads an input buffer: `None` for (NULL, 0).
///
/// # Safety
///
/// `ptr` is NULL or points to `len` readable bytes that stay valid and unmodified for `'a`.
unsafe fn input<'a>(ptr: *const u8, len: usize, what: &str) -> Result<Option<&'a [u8]>, Failure> {
    if ptr.is_null() {
        return if len == 0 {
            Ok(None)
        } else {
            Err(Failure::new(
                OUTLOOP_NULL_PARAMETER,
                format!("`{what}` is NULL but its length is {len}"),
            ))
        };
    }
    if len > isize::MAX as usize {
        return Err(Failure::new(
            OUTLOOP_USAGE,
            format!("`{what}` has an impossible length"),
        ));
    }
    // SAFETY: non-NULL, len fits isize, and the caller guarantees `len` readable bytes that
    // live for 'a.
    Ok(Some(unsafe { std::slice::from_raw_parts(ptr, len) }))
}

/// Reads an optional UTF-8 text input.
///
/// # Safety
///
/// As for [`input`].
unsafe fn opt_text<'a>(ptr: *const u8, len: usize, what: &str) -> Result<Option<&'a str>, Failure> {
    // SAFETY: forwarded contract.
    match unsafe { input(ptr, len, what) }? {
        None => Ok(None),
        Some(b) => std::str::from_utf8(b).map(Some).map_err(|e| {
            Failure::new(
                OUTLOOP_INVALID_UTF8,
                format!("`{what}` is not valid UTF-8 (at byte {})", e.valid_up_to()),
            )
        }),
    }
}

/// Reads a required UTF-8 text input: NULL is an error even with length 0.
///
/// # Safety
///
/// As for [`input`].
unsafe fn text<'a>(ptr: *const u8, len: usize, what: &str) -> Result<&'a str, Failure> {
    if ptr.is_null() {
        return Err(null(what));
    }
    // SAFETY: forwarded contract.
    unsafe { opt_text(ptr, len, what) }?.ok_or_else(|| null(what))
}

/// Reads optional JSON parameters: absent means `{}`; otherwise a JSON object.
///
/// # Safety
///
/// As for [`input`].
unsafe fn params(ptr: *const u8, len: usize) -> Result<RawParams, Failure> {
    // SAFETY: forwarded contract.
    let Some(s) = (unsafe { opt_text(ptr, len, "params_json") })? else {
        return Ok(RawParams::new());
    };
    match serde_json::from_str::<serde_json::Value>(s) {
        Ok(serde_json::Value::Object(m)) => Ok(m.into_iter().collect()),
        Ok(_) => Err(Failure::new(
            OUTLOOP_INVALID_JSON,
            "`params_json` must be a JSON object",
        )),
        // serde_json's message names line and column, never the input text.
        Err(e) => Err(Failure::new(
            OUTLOOP_INVALID_JSON,
            format!("`params_json` is not valid JSON: {e}"),
        )),
    }
}

/// Checks an output pair before any work is done.
fn check_out<T>(out: *mut T, what: &str) -> Result<(), Failure> {
    if out.is_null() {
        Err(null(what))
    } else {
        Ok(())
    }
}

/// Hands `data` to the caller as a NUL-followed buffer freed by [`outloop_buffer_free`].
///
/// # Safety
///
/// `out_ptr` and `out_len` are non-NULL (checked by [`check_out`]) and writable.
unsafe fn give(out_ptr: *mut *mut u8, out_len: *mut usize, mut data: Vec<u8>) {
    let len = data.len();
    data.push(0);
    let raw = Box::into_raw(data.into_boxed_slice()) as *mut u8;
    // SAFETY: both pointers are non-NULL and writable, by the caller's contract.
    unsafe {
        out_ptr.write(raw);
        out_len.write(len);
    }
}

/// The broker handle: a broker over one host config, one workspace directory, and the tokio
/// runtime that drives its calls.
///
/// Opened by [`outloop_broker_open`], freed by [`outloop_broker_free`].
///
/// **Thread safety:** a handle may be used from several threads at once (calls on it are
/// `Send + Sync` and take `const` access); only [`outloop_broker_free`] must not race with
/// any other call on it. **Lifetime:** valid from a successful open until it is freed; buffers
/// it returned stay valid after it is freed, until they are freed themselves.
#[allow(non_camel_case_types)]
pub struct outloop_broker {
    broker: Broker,
    workspace: PathBuf,
    runtime: tokio::runtime::Runtime,
}

// The thread-safety promise above, checked by the compiler.
const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<outloop_broker>();
};

impl outloop_broker {
    fn open(home: Option<&str>, workspace: Option<&str>) -> Result<Self, Failure> {
        let paths = match home {
            None => Paths::from_env()?,
            Some(h) if Path::new(h).is_absolute() => Paths::under(h),
            Some(h) => {
                return Err(Failure::new(
                    OUTLOOP_USAGE,
                    format!("`home` must be an absolute path, got `{h}`"),
                ));
            }
        };
        let workspace = match workspace {
            Some(w) => PathBuf::from(w),
            None => std::env::current_dir().map_err(|e| {
                Failure::new(
                    OUTLOOP_IO,
                    format!("cannot read the current directory: {e}"),
                )
            })?,
        };
        let config = HostConfig::load(&paths)?;
        let backends = outloop_backends::from_config(&config)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("outloop-ffi")
            .enable_all()
            .build()
            .map_err(|e| {
                Failure::new(
                    OUTLOOP_INTERNAL,
                    format!("cannot start the tokio runtime: {e}"),
                )
            })?;
        let broker = {
            // reqwest's client is built inside the runtime it will run on.
            let _guard = runtime.enter();
            Broker::builder(config).backends(backends).build()?
        };
        Ok(Self {
            broker,
            workspace,
            runtime,
        })
    }
}

/// Borrows a handle.
///
/// # Safety
///
/// `b` is NULL or a live handle from [`outloop_broker_open`].
unsafe fn handle<'a>(b: *const outloop_broker) -> Result<&'a outloop_broker, Failure> {
    // SAFETY: NULL or a live handle, by the caller's contract.
    unsafe { b.as_ref() }.ok_or_else(|| null("broker"))
}

fn to_json(v: &impl serde::Serialize) -> Result<Vec<u8>, Failure> {
    serde_json::to_vec(v)
        .map_err(|e| Failure::new(OUTLOOP_INTERNAL, format!("cannot encode the result: {e}")))
}

/// Returns [`ABI_VERSION`]. Safe to call from any thread at any time; does not touch the last
/// error.
#[unsafe(no_mangle)]
pub extern "C" fn outloop_abi_version() -> u32 {
    ABI_VERSION
}

/// The stable snake_case name of a status (`"ok"`, `"policy_denied"`, …), or `"unknown"` for a
/// number this library does not know.
///
/// The string is static, NUL-terminated, and must not be freed. Does not touch the last error.
#[unsafe(no_mangle)]
pub extern "C" fn outloop_status_name(status: i32) -> *const c_char {
    ALL_STATUSES
        .iter()
        .find(|s| **s as i32 == status)
        .map(|s| s.name_c().as_ptr())
        .unwrap_or(c"unknown".as_ptr())
}

/// The calling thread's last error message: a NUL-terminated UTF-8 line, or NULL when the last
/// export called on this thread succeeded (or none was called).
///
/// The string is owned by the library: do not free it. It stays valid until the next
/// `outloop_*` call on the same thread (other than this one, [`outloop_abi_version`] and
/// [`outloop_status_name`]). It never holds a secret.
#[unsafe(no_mangle)]
pub extern "C" fn outloop_last_error_message() -> *const c_char {
    LAST_ERROR
        .try_with(|e| {
            e.borrow()
                .as_ref()
                .map(|c| c.as_ptr())
                .unwrap_or(std::ptr::null())
        })
        .unwrap_or(std::ptr::null())
}

/// Opens a broker handle over a host config and a workspace directory.
///
/// - `home`, `home_len`: the Outloop home directory, absolute, holding `config.toml`, the vault
///   and the audit log (what `OUTLOOP_HOME` names). (NULL, 0): `OUTLOOP_HOME` when set, else
///   the platform directories, as the `outloop` command does.
/// - `workspace`, `workspace_len`: the directory requests come from; calls on the handle are
///   made for the tenant it is bound to. (NULL, 0): the process's current directory, read
///   now.
/// - `out_broker`: receives the handle on `OUTLOOP_OK`; free it with [`outloop_broker_free`].
///
/// The workspace need not be bound yet: an unbound one is reported by each call
/// (`OUTLOOP_UNBOUND_WORKSPACE`).
///
/// # Errors
///
/// `OUTLOOP_NULL_PARAMETER`, `OUTLOOP_INVALID_UTF8`, `OUTLOOP_USAGE` (relative `home`),
/// `OUTLOOP_CONFIG` (missing or malformed config, bad backend settings), `OUTLOOP_IO`, and a
/// backend's own status when it cannot be opened.
///
/// # Safety
///
/// Each (pointer, length) pair is (NULL, 0) or `length` readable bytes; `out_broker` is NULL
/// or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn outloop_broker_open(
    home: *const u8,
    home_len: usize,
    workspace: *const u8,
    workspace_len: usize,
    out_broker: *mut *mut outloop_broker,
) -> outloop_status {
    boundary("outloop_broker_open", || {
        check_out(out_broker, "out_broker")?;
        // SAFETY: the caller's contract on each pair.
        let home = unsafe { opt_text(home, home_len, "home") }?;
        // SAFETY: as above.
        let workspace = unsafe { opt_text(workspace, workspace_len, "workspace") }?;
        let b = Box::new(outloop_broker::open(home, workspace)?);
        // SAFETY: checked non-NULL above; writable by the caller's contract.
        unsafe { out_broker.write(Box::into_raw(b)) };
        Ok(())
    })
}

/// Frees a broker handle: stops its runtime (waiting for its worker threads) and zeroizes the
/// cached credentials. NULL is a no-op. Does not touch the last error.
///
/// # Safety
///
/// `broker` is NULL or a handle from [`outloop_broker_open`] not yet freed, and no other call
/// on it is running or will run.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn outloop_broker_free(broker: *mut outloop_broker) {
    if broker.is_null() {
        return;
    }
    // A panic while dropping cannot be reported; it is contained here and the handle leaks.
    let _ = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: a live handle created by Box::into_raw in outloop_broker_open, freed once.
        drop(unsafe { Box::from_raw(broker) });
    }));
}

/// Frees a buffer returned by the library. NULL is a no-op. Does not touch the last error.
///
/// `len` is the length returned with the buffer (without its trailing NUL).
///
/// # Safety
///
/// `ptr` is NULL or a buffer from this library not yet freed, with the `len` it came with.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn outloop_buffer_free(ptr: *mut u8, len: usize) {
    if ptr.is_null() {
        return;
    }
    let _ = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: `ptr` came from Box::<[u8]>::into_raw in `give` with len + 1 bytes (the NUL).
        drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(ptr, len + 1)) });
    }));
}

/// Performs an action for the handle's workspace: the whole request flow (tenant, policy,
/// credentials, call, redaction, audit). Blocks until done.
///
/// - `action`, `action_len`: the action name (required).
/// - `params_json`, `params_len`: the parameters as a JSON object; (NULL, 0) is `{}`.
/// - `tenant`, `tenant_len`: the tenant the caller expects, or (NULL, 0). A tenant other than
///   the workspace's is denied before any backend is touched.
/// - `out_json`, `out_len`: on `OUTLOOP_OK`, the redacted result as the JSON object
///   `outloop call --json` prints (`action`, `tenant`, `status`, `status_text`, `headers`,
///   `body`, `redactions`). Whatever the upstream status, the call succeeded if it ran.
///
/// # Errors
///
/// `OUTLOOP_NULL_PARAMETER`, `OUTLOOP_INVALID_UTF8`, `OUTLOOP_INVALID_JSON`; the broker's
/// statuses: `OUTLOOP_UNBOUND_WORKSPACE`, `OUTLOOP_POLICY_DENIED`, `OUTLOOP_APPROVAL_REQUIRED`,
/// `OUTLOOP_UNKNOWN_ACTION`, `OUTLOOP_INVALID_PARAMETER`, `OUTLOOP_CONFIG`, the backend
/// statuses (108–112, 116), `OUTLOOP_SAFETY_REFUSED`, `OUTLOOP_UPSTREAM_UNREACHABLE`,
/// `OUTLOOP_TIMEOUT`, `OUTLOOP_AUDIT`. Every attempt past the argument checks is audited.
///
/// # Safety
///
/// `broker` is NULL or a live handle; each (pointer, length) input pair is (NULL, 0) or
/// `length` readable bytes; the out-parameters are NULL or writable.
#[unsafe(no_mangle)]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn outloop_call(
    broker: *const outloop_broker,
    action: *const u8,
    action_len: usize,
    params_json: *const u8,
    params_len: usize,
    tenant: *const u8,
    tenant_len: usize,
    out_json: *mut *mut u8,
    out_len: *mut usize,
) -> outloop_status {
    boundary("outloop_call", || {
        // SAFETY: the caller's contract.
        let b = unsafe { handle(broker) }?;
        check_out(out_json, "out_json")?;
        check_out(out_len, "out_len")?;
        // SAFETY: the caller's contract on each pair.
        let action = unsafe { text(action, action_len, "action") }?;
        // SAFETY: as above.
        let params = unsafe { params(params_json, params_len) }?;
        // SAFETY: as above.
        let tenant = unsafe { opt_text(tenant, tenant_len, "tenant") }?;
        let result = b.runtime.block_on(b.broker.call(CallRequest {
            workspace: b.workspace.clone(),
            tenant: tenant.map(str::to_owned),
            action: action.to_owned(),
            params,
        }))?;
        let json = to_json(&result)?;
        // SAFETY: checked non-NULL above.
        unsafe { give(out_json, out_len, json) };
        Ok(())
    })
}

/// One alias request as `outloop_alias_request` reads it from JSON.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct AliasRequestJson {
    alias: String,
    method: String,
    path: String,
    #[serde(default)]
    query: Option<String>,
    #[serde(default)]
    headers: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    body_base64: Option<String>,
}

/// Parses the request JSON of `outloop_alias_request`.
fn alias_request_json(text: &str) -> Result<AliasRequestJson, Failure> {
    // serde_json's message names the field, line and column, never the input text.
    let r: AliasRequestJson = serde_json::from_str(text).map_err(|e| {
        Failure::new(
            OUTLOOP_INVALID_JSON,
            format!("`request_json` is not a valid alias request: {e}"),
        )
    })?;
    if r.body.is_some() && r.body_base64.is_some() {
        return Err(Failure::new(
            OUTLOOP_INVALID_JSON,
            "`request_json`: give `body` or `body_base64`, not both",
        ));
    }
    Ok(r)
}

/// Sends a request through an alias (`[aliases.<name>]`, a pinned upstream) for the handle's
/// workspace: the whole request flow (tenant, policy with the alias's `METHOD /path` rules,
/// credential, call below the pinned base URL, redaction, audit). Blocks until the whole
/// (capped) response body has arrived.
///
/// - `request_json`, `request_len`: a JSON object:
///   `{"alias": "hubspot", "method": "GET", "path": "/crm/v3/objects/contacts",
///   "query": "limit=5", "headers": {"Content-Type": "application/json"},
///   "body": "text"}`. `alias`, `method` (`GET`, `HEAD`, `POST`, `PUT`, `PATCH`, `DELETE`) and
///   `path` (below the alias's base URL, starting with `/`) are required; `query` (raw, without
///   `?`), `headers` (name → value) and the body are optional. The body is UTF-8 text in
///   `body`, or any bytes as standard base64 in `body_base64` (not both). `Authorization`,
///   `Cookie`, `Proxy-*`, hop-by-hop and `Host` headers are dropped.
/// - `tenant`, `tenant_len`: the tenant the caller expects, or (NULL, 0). A tenant other than
///   the workspace's is denied before any backend is touched.
/// - `out_json`, `out_len`: on `OUTLOOP_OK`, the redacted response as the JSON object
///   `outloop call --json` prints, with `action` = `"alias:<name>"`: `action`, `tenant`,
///   `status`, `status_text`, `headers`, `body` (text), `redactions`. Whatever the upstream
///   status, the request succeeded if it ran.
///
/// # Errors
///
/// `OUTLOOP_NULL_PARAMETER`, `OUTLOOP_INVALID_UTF8`, `OUTLOOP_INVALID_JSON` (not an object,
/// unknown or missing field, bad base64); the broker's statuses as for [`outloop_call`],
/// `OUTLOOP_UNKNOWN_ACTION` for an unknown alias and `OUTLOOP_INVALID_PARAMETER` for a bad
/// method, path (`..`, `//`, backslashes, …), query or header. Every attempt past the argument
/// checks is audited.
///
/// # Safety
///
/// As for [`outloop_call`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn outloop_alias_request(
    broker: *const outloop_broker,
    request_json: *const u8,
    request_len: usize,
    tenant: *const u8,
    tenant_len: usize,
    out_json: *mut *mut u8,
    out_len: *mut usize,
) -> outloop_status {
    boundary("outloop_alias_request", || {
        // SAFETY: the caller's contract.
        let b = unsafe { handle(broker) }?;
        check_out(out_json, "out_json")?;
        check_out(out_len, "out_len")?;
        // SAFETY: the caller's contract on each pair.
        let text = unsafe { self::text(request_json, request_len, "request_json") }?;
        // SAFETY: as above.
        let tenant = unsafe { opt_text(tenant, tenant_len, "tenant") }?;
        let r = alias_request_json(text)?;
        let body = match (r.body, r.body_base64) {
            (Some(t), _) => t.into_bytes(),
            (None, Some(b64)) => {
                use base64::Engine as _;
                base64::engine::general_purpose::STANDARD
                    .decode(b64.as_bytes())
                    .map_err(|e| {
                        Failure::new(
                            OUTLOOP_INVALID_JSON,
                            format!("`request_json`: `body_base64` is not standard base64: {e}"),
                        )
                    })?
            }
            (None, None) => Vec::new(),
        };
        let alias = r.alias;
        let result = b.runtime.block_on(async {
            let resp = b
                .broker
                .request(AliasRequest {
                    workspace: b.workspace.clone(),
                    tenant: tenant.map(str::to_owned),
                    alias: alias.clone(),
                    method: r.method,
                    path: r.path,
                    query: r.query,
                    headers: r.headers.into_iter().collect(),
                    body,
                })
                .await?;
            // The tenant the broker resolved: the named one, checked equal, or the workspace's.
            let tenant = match tenant {
                Some(t) => t.to_owned(),
                None => outloop_core::workspace::resolve(b.broker.config(), &b.workspace)?.tenant,
            };
            resp.collect(&alias, &tenant).await
        })?;
        let json = to_json(&result)?;
        // SAFETY: checked non-NULL above.
        unsafe { give(out_json, out_len, json) };
        Ok(())
    })
}

/// Lists the actions and aliases the handle's workspace may use (allowed or held for
/// approval), as the JSON object `outloop actions --json` prints:
/// `{"workspace": "...", "tenant": "...", "actions": [{name, kind, description, decision,
/// params}, ...]}`. No backend is touched.
///
/// # Errors
///
/// `OUTLOOP_NULL_PARAMETER`, `OUTLOOP_UNBOUND_WORKSPACE`.
///
/// # Safety
///
/// As for [`outloop_call`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn outloop_actions(
    broker: *const outloop_broker,
    out_json: *mut *mut u8,
    out_len: *mut usize,
) -> outloop_status {
    boundary("outloop_actions", || {
        // SAFETY: the caller's contract.
        let b = unsafe { handle(broker) }?;
        check_out(out_json, "out_json")?;
        check_out(out_len, "out_len")?;
        let (ws, list) = b.broker.actions_for(&b.workspace)?;
        let json = to_json(&serde_json::json!({
            "workspace": ws.root.display().to_string(),
            "tenant": ws.tenant,
            "actions": list,
        }))?;
        // SAFETY: checked non-NULL above.
        unsafe { give(out_json, out_len, json) };
        Ok(())
    })
}

/// Explains the policy decision for an action (or `alias:<name>`) from the handle's
/// workspace, with no backend call and no audit record: the JSON object
/// `{action, workspace, tenant, decision, rule, reason}`, `decision` being `allow`, `deny` or
/// `approve`. A denial is a successful explanation (`OUTLOOP_OK`).
///
/// `params_json`, `params_len`: a JSON object or (NULL, 0), validated as for a call.
///
/// # Errors
///
/// `OUTLOOP_NULL_PARAMETER`, `OUTLOOP_INVALID_UTF8`, `OUTLOOP_INVALID_JSON`,
/// `OUTLOOP_UNBOUND_WORKSPACE`, `OUTLOOP_UNKNOWN_ACTION`, `OUTLOOP_INVALID_PARAMETER`.
///
/// # Safety
///
/// As for [`outloop_call`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn outloop_explain(
    broker: *const outloop_broker,
    action: *const u8,
    action_len: usize,
    params_json: *const u8,
    params_len: usize,
    out_json: *mut *mut u8,
    out_len: *mut usize,
) -> outloop_status {
    boundary("outloop_explain", || {
        // SAFETY: the caller's contract.
        let b = unsafe { handle(broker) }?;
        check_out(out_json, "out_json")?;
        check_out(out_len, "out_len")?;
        // SAFETY: the caller's contract on each pair.
        let action = unsafe { text(action, action_len, "action") }?;
        // SAFETY: as above.
        let params = unsafe { params(params_json, params_len) }?;
        let e = b.broker.explain(&b.workspace, action, &params)?;
        let json = to_json(&e)?;
        // SAFETY: checked non-NULL above.
        unsafe { give(out_json, out_len, json) };
        Ok(())
    })
}

/// Redacts a caller's buffer with every secret of the handle's workspace tenant (each
/// credential in its `credentials` table, in every encoding the broker searches), so text
/// from elsewhere can be shown to an agent. Blocks while credentials are fetched.
///
/// - `input`, `input_len`: any bytes (not necessarily UTF-8); (NULL, 0) is empty.
/// - `out`, `out_len`: on `OUTLOOP_OK`, the redacted bytes (each secret replaced by
///   `[REDACTED:<credential>]`).
/// - `out_count`: NULL, or receives the number of replacements on `OUTLOOP_OK`.
///
/// # Errors
///
/// `OUTLOOP_NULL_PARAMETER`, `OUTLOOP_UNBOUND_WORKSPACE`, the backend statuses when a
/// credential cannot be fetched (no partial redaction is returned), `OUTLOOP_INVALID_SECRET`.
///
/// # Safety
///
/// As for [`outloop_call`]; `out_count` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn outloop_redact(
    broker: *const outloop_broker,
    input: *const u8,
    input_len: usize,
    out: *mut *mut u8,
    out_len: *mut usize,
    out_count: *mut usize,
) -> outloop_status {
    boundary("outloop_redact", || {
        // SAFETY: the caller's contract.
        let b = unsafe { handle(broker) }?;
        check_out(out, "out")?;
        check_out(out_len, "out_len")?;
        // SAFETY: the caller's contract on the pair.
        let bytes = unsafe { self::input(input, input_len, "input") }?.unwrap_or_default();
        let (redacted, count) = b
            .runtime
            .block_on(b.broker.redact_for(&b.workspace, bytes))?;
        // SAFETY: checked non-NULL above.
        unsafe { give(out, out_len, redacted) };
        if !out_count.is_null() {
            // SAFETY: non-NULL and writable by the caller's contract.
            unsafe { out_count.write(count) };
        }
        Ok(())
    })
}

/// Verifies the audit log's hash chain (the log of the handle's home). On `OUTLOOP_OK`,
/// `out_records` receives the number of records checked (0 for a missing or empty log).
///
/// # Errors
///
/// `OUTLOOP_NULL_PARAMETER`; `OUTLOOP_AUDIT` naming the first line that does not verify.
///
/// # Safety
///
/// `broker` is NULL or a live handle; `out_records` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn outloop_audit_verify(
    broker: *const outloop_broker,
    out_records: *mut u64,
) -> outloop_status {
    boundary("outloop_audit_verify", || {
        // SAFETY: the caller's contract.
        let b = unsafe { handle(broker) }?;
        check_out(out_records, "out_records")?;
        let n = AuditLog::new(b.broker.config().paths.audit_file()).verify()?;
        // SAFETY: checked non-NULL above.
        unsafe { out_records.write(n as u64) };
        Ok(())
    })
}

/// Panics on purpose inside the panic boundary and returns `OUTLOOP_PANIC`, setting the last
/// error. Exists so bindings can test their handling of that status; it has no other effect.
#[unsafe(no_mangle)]
pub extern "C" fn outloop_debug_panic() -> outloop_status {
    boundary("outloop_debug_panic", || {
        std::panic::panic_any("outloop_debug_panic: deliberate panic")
    })
}

#[cfg(test)]
mod tests;
