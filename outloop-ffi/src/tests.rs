//! Rust-side tests of every export: NULL pointers, invalid UTF-8, invalid JSON, unknown action,
//! denied and wrong-tenant requests, a forced panic; each returns its status and message and
//! none crashes. Out-parameters are checked untouched on failure.

use std::collections::BTreeMap;
use std::ffi::CStr;
use std::path::PathBuf;
use std::ptr;

use outloop_backends::vault::{IdentityStore, VaultBackend};
use outloop_core::config::Paths;
use outloop_core::{SecretBackend, SecretRef, SecretValue};

use super::*;

const ACME_SECRET: &str = "FAKE-ffi-acme-token-5d1e0c";
const GLOBEX_SECRET: &str = "FAKE-ffi-globex-token-93ab7e";

struct Home {
    _tmp: tempfile::TempDir,
    home: PathBuf,
    acme: PathBuf,
    unbound: PathBuf,
}

/// A home with a config, an initialized vault holding one secret per tenant, two bound
/// workspaces and an unbound directory.
fn home() -> Home {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().canonicalize().unwrap();
    let home = root.join("home");
    let (acme, globex, unbound) = (root.join("acme"), root.join("globex"), root.join("none"));
    for d in [&home, &acme, &globex, &unbound] {
        std::fs::create_dir_all(d).unwrap();
    }
    // Alias requests go to the real httpbin when the suite runs under scripts/test.sh; else to
    // a port where nothing listens (the tests that need it say so).
    let httpbin =
        std::env::var("OUTLOOP_TEST_HTTPBIN").unwrap_or_else(|_| "http://127.0.0.1:9".into());
    let config = format!(
        r#"
[backends.vault]
kind = "vault"
[egress]
allow_private = ["127.0.0.0/8"]
[tenants.acme]
workspaces = [{acme:?}]
credentials = {{ echo = "vault://acme/echo" }}
[tenants.globex]
workspaces = [{globex:?}]
credentials = {{ echo = "vault://globex/echo" }}
[actions."echo.get"]
description = "Nothing listens there"
credential = "echo"
method = "GET"
url = "http://127.0.0.1:9/get"
auth = {{ type = "bearer" }}
[actions."echo.get".params]
n = {{ type = "integer", min = 1, max = 5, required = false }}
[actions."echo.delete"]
credential = "echo"
method = "DELETE"
url = "http://127.0.0.1:9/delete"
auth = {{ type = "bearer" }}
[aliases.httpbin]
credential = "echo"
base_url = "{httpbin}"
auth = {{ type = "bearer" }}
allow = ["GET /bearer", "POST /anything/**"]
[policy]
default = "deny"
[policy.tenants.acme]
allow = ["echo.get", "alias:httpbin"]
"#
    );
    std::fs::write(home.join("config.toml"), config).unwrap();
    let paths = Paths::under(&home);
    let vault =
        VaultBackend::open_with("vault", &paths, &BTreeMap::new(), &[], IdentityStore::File)
            .unwrap();
    vault.init().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    for (r, v) in [
        ("vault://acme/echo", ACME_SECRET),
        ("vault://globex/echo", GLOBEX_SECRET),
    ] {
        rt.block_on(vault.set(
            &SecretRef::parse(r).unwrap(),
            SecretValue::from_string(v.into()),
        ))
        .unwrap();
    }
    Home {
        _tmp: tmp,
        home,
        acme,
        unbound,
    }
}

fn last_error() -> Option<String> {
    let p = outloop_last_error_message();
    if p.is_null() {
        None
    } else {
        // SAFETY: a NUL-terminated string owned by this thread's last error, read at once.
        Some(unsafe { CStr::from_ptr(p) }.to_str().unwrap().to_owned())
    }
}

/// Asserts a failure: its status, a message naming `needle`, and no secret in it.
fn assert_fails(status: outloop_status, want: outloop_status, needle: &str) {
    assert_eq!(status, want, "last error: {:?}", last_error());
    let msg = last_error().expect("a failure sets the last error");
    assert!(msg.contains(needle), "{msg:?} should mention {needle:?}");
    assert!(!msg.contains("FAKE"), "a secret reached the message: {msg}");
}

fn open(home: &Home, ws: &std::path::Path) -> *mut outloop_broker {
    let h = home.home.to_str().unwrap();
    let w = ws.to_str().unwrap();
    let mut b = ptr::null_mut();
    // SAFETY: valid (pointer, length) pairs and a writable out-parameter.
    let s = unsafe { outloop_broker_open(h.as_ptr(), h.len(), w.as_ptr(), w.len(), &mut b) };
    assert_eq!(s, OUTLOOP_OK, "{:?}", last_error());
    assert!(last_error().is_none());
    b
}

/// Takes a returned buffer as text and frees it.
fn take(ptr: *mut u8, len: usize) -> String {
    // SAFETY: a buffer of `len` bytes followed by a NUL, from `give`.
    let bytes = unsafe { std::slice::from_raw_parts(ptr, len + 1) };
    assert_eq!(bytes[len], 0, "buffers are NUL-terminated");
    let s = String::from_utf8(bytes[..len].to_vec()).unwrap();
    // SAFETY: freed once with its length.
    unsafe { outloop_buffer_free(ptr, len) };
    s
}

const SENTINEL: *mut u8 = std::ptr::dangling_mut::<u8>();

/// Calls `outloop_call` and returns (status, output text when OK); asserts the
/// out-parameters are untouched on failure.
fn call(
    b: *const outloop_broker,
    action: &[u8],
    params: &[u8],
    tenant: Option<&str>,
) -> (outloop_status, Option<String>) {
    let (mut out, mut len) = (SENTINEL, 7usize);
    let (tp, tl) = tenant.map_or((ptr::null(), 0), |t| (t.as_ptr(), t.len()));
    let (pp, pl) = if params.is_empty() {
        (ptr::null(), 0)
    } else {
        (params.as_ptr(), params.len())
    };
    // SAFETY: valid pairs and out-parameters.
    let s = unsafe {
        outloop_call(
            b,
            action.as_ptr(),
            action.len(),
            pp,
            pl,
            tp,
            tl,
            &mut out,
            &mut len,
        )
    };
    if s == OUTLOOP_OK {
        (s, Some(take(out, len)))
    } else {
        assert_eq!(
            (out, len),
            (SENTINEL, 7),
            "out-parameters written on failure"
        );
        (s, None)
    }
}

#[test]
fn abi_version_is_exported() {
    assert_eq!(outloop_abi_version(), ABI_VERSION);
}

#[test]
fn status_numbers_and_names_are_unique_and_stable() {
    let mut nums = std::collections::HashSet::new();
    let mut names = std::collections::HashSet::new();
    for s in ALL_STATUSES {
        assert!(nums.insert(s as i32), "{s:?} reuses a number");
        assert!(names.insert(s.name()), "{s:?} reuses a name");
        // SAFETY: static NUL-terminated strings.
        let c = unsafe { CStr::from_ptr(outloop_status_name(s as i32)) };
        assert_eq!(c.to_str().unwrap(), s.name());
    }
    // Fixed numbers: changing one breaks every binding.
    assert_eq!(OUTLOOP_NULL_PARAMETER as i32, 1);
    assert_eq!(OUTLOOP_INVALID_UTF8 as i32, 2);
    assert_eq!(OUTLOOP_PANIC as i32, 3);
    assert_eq!(OUTLOOP_POLICY_DENIED as i32, 106);
    assert_eq!(OUTLOOP_INTERNAL as i32, 119);
    // The broker kinds map to their namesakes.
    for k in [
        ErrorKind::PolicyDenied,
        ErrorKind::NotFound,
        ErrorKind::Timeout,
    ] {
        assert_eq!(outloop_status::from_kind(k).name(), k.as_str());
    }
    // SAFETY: static string.
    let unknown = unsafe { CStr::from_ptr(outloop_status_name(4242)) };
    assert_eq!(unknown.to_str().unwrap(), "unknown");
}

#[test]
fn forced_panic_is_caught_and_reported() {
    assert_fails(outloop_debug_panic(), OUTLOOP_PANIC, "panic");
    // The next successful export clears the last error.
    let h = home();
    let b = open(&h, &h.acme);
    assert!(last_error().is_none());
    // SAFETY: a live handle, freed once.
    unsafe { outloop_broker_free(b) };
}

#[test]
fn last_error_is_per_thread() {
    assert_fails(outloop_debug_panic(), OUTLOOP_PANIC, "panic");
    let other = std::thread::spawn(last_error).join().unwrap();
    assert_eq!(other, None, "another thread saw this thread's error");
    assert!(last_error().is_some());
}

#[test]
fn open_checks_its_arguments() {
    let h = home();
    let mut b = SENTINEL as *mut outloop_broker;
    // SAFETY: each case passes pairs that are valid or deliberately NULL.
    unsafe {
        assert_fails(
            outloop_broker_open(ptr::null(), 0, ptr::null(), 0, ptr::null_mut()),
            OUTLOOP_NULL_PARAMETER,
            "out_broker",
        );
        assert_fails(
            outloop_broker_open(ptr::null(), 3, ptr::null(), 0, &mut b),
            OUTLOOP_NULL_PARAMETER,
            "home",
        );
        let bad = b"/tmp/\xff\xfe";
        assert_fails(
            outloop_broker_open(bad.as_ptr(), bad.len(), ptr::null(), 0, &mut b),
            OUTLOOP_INVALID_UTF8,
            "home",
        );
        let rel = "relative/home";
        assert_fails(
            outloop_broker_open(rel.as_ptr(), rel.len(), ptr::null(), 0, &mut b),
            OUTLOOP_USAGE,
            "absolute",
        );
        let missing = h.home.join("nope");
        let m = missing.to_str().unwrap();
        let s = outloop_broker_open(m.as_ptr(), m.len(), ptr::null(), 0, &mut b);
        assert!(matches!(s, OUTLOOP_CONFIG | OUTLOOP_IO), "{s:?}");
    }
    assert_eq!(
        b, SENTINEL as *mut outloop_broker,
        "out_broker written on failure"
    );
}

#[test]
fn call_reports_each_failure_with_its_status() {
    let h = home();
    let b = open(&h, &h.acme);
    // SAFETY: deliberately NULL handle and out-parameters.
    unsafe {
        let (mut o, mut l) = (ptr::null_mut(), 0);
        assert_fails(
            outloop_call(
                ptr::null(),
                b"x".as_ptr(),
                1,
                ptr::null(),
                0,
                ptr::null(),
                0,
                &mut o,
                &mut l,
            ),
            OUTLOOP_NULL_PARAMETER,
            "broker",
        );
        assert_fails(
            outloop_call(
                b,
                b"x".as_ptr(),
                1,
                ptr::null(),
                0,
                ptr::null(),
                0,
                ptr::null_mut(),
                &mut l,
            ),
            OUTLOOP_NULL_PARAMETER,
            "out_json",
        );
        assert_fails(
            outloop_call(
                b,
                ptr::null(),
                0,
                ptr::null(),
                0,
                ptr::null(),
                0,
                &mut o,
                &mut l,
            ),
            OUTLOOP_NULL_PARAMETER,
            "action",
        );
    }
    type Case<'a> = (&'a [u8], &'a [u8], Option<&'a str>, outloop_status, &'a str);
    let cases: [Case<'_>; 8] = [
        (b"echo.\xc3(", b"", None, OUTLOOP_INVALID_UTF8, "action"),
        (
            b"echo.get",
            b"{\"n\": ",
            None,
            OUTLOOP_INVALID_JSON,
            "params_json",
        ),
        (b"echo.get", b"[1, 2]", None, OUTLOOP_INVALID_JSON, "object"),
        (
            b"echo.get",
            b"{\"n\": 99}",
            None,
            OUTLOOP_INVALID_PARAMETER,
            "n",
        ),
        (b"no.such", b"", None, OUTLOOP_UNKNOWN_ACTION, "no.such"),
        (b"echo.delete", b"", None, OUTLOOP_POLICY_DENIED, "denied"),
        (
            b"echo.get",
            b"",
            Some("globex"),
            OUTLOOP_POLICY_DENIED,
            "globex",
        ),
        // Allowed: the secret is fetched, then the closed port refuses the connection.
        (
            b"echo.get",
            b"{\"n\": 2}",
            None,
            OUTLOOP_UPSTREAM_UNREACHABLE,
            "",
        ),
    ];
    for (action, params, tenant, want, needle) in cases {
        let (s, _) = call(b, action, params, tenant);
        assert_fails(s, want, needle);
    }
    // Every attempt past the argument checks is audited, and the chain verifies.
    let mut n = 0u64;
    // SAFETY: a live handle and a writable out-parameter.
    let s = unsafe { outloop_audit_verify(b, &mut n) };
    assert_eq!(s, OUTLOOP_OK, "{:?}", last_error());
    assert_eq!(n, 5);
    let audit = std::fs::read_to_string(h.home.join("audit.jsonl")).unwrap();
    assert!(!audit.contains("FAKE"), "a secret reached the audit log");
    // SAFETY: a live handle, freed once.
    unsafe { outloop_broker_free(b) };
}

#[test]
fn unbound_workspace_is_reported_by_every_broker_export() {
    let h = home();
    let b = open(&h, &h.unbound);
    let (s, _) = call(b, b"echo.get", b"", None);
    assert_fails(s, OUTLOOP_UNBOUND_WORKSPACE, "");
    let (mut o, mut l) = (SENTINEL, 7usize);
    // SAFETY: a live handle and writable out-parameters.
    unsafe {
        assert_fails(
            outloop_actions(b, &mut o, &mut l),
            OUTLOOP_UNBOUND_WORKSPACE,
            "",
        );
        assert_fails(
            outloop_explain(b, b"echo.get".as_ptr(), 8, ptr::null(), 0, &mut o, &mut l),
            OUTLOOP_UNBOUND_WORKSPACE,
            "",
        );
        assert_fails(
            outloop_redact(b, b"abc".as_ptr(), 3, &mut o, &mut l, ptr::null_mut()),
            OUTLOOP_UNBOUND_WORKSPACE,
            "",
        );
        outloop_broker_free(b);
    }
    assert_eq!((o, l), (SENTINEL, 7));
}

#[test]
fn actions_explain_redact_and_alias() {
    let h = home();
    let b = open(&h, &h.acme);
    let (mut o, mut l) = (ptr::null_mut(), 0usize);
    // SAFETY: a live handle, valid pairs and writable out-parameters throughout.
    unsafe {
        assert_eq!(outloop_actions(b, &mut o, &mut l), OUTLOOP_OK);
        let v: serde_json::Value = serde_json::from_str(&take(o, l)).unwrap();
        assert_eq!(v["tenant"], "acme");
        let names: Vec<_> = v["actions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["echo.get", "alias:httpbin"]);

        let a = b"echo.delete";
        assert_eq!(
            outloop_explain(b, a.as_ptr(), a.len(), ptr::null(), 0, &mut o, &mut l),
            OUTLOOP_OK
        );
        let v: serde_json::Value = serde_json::from_str(&take(o, l)).unwrap();
        assert_eq!(v["decision"], "deny");
        assert_fails(
            outloop_explain(b, b"zz".as_ptr(), 2, ptr::null(), 0, &mut o, &mut l),
            OUTLOOP_UNKNOWN_ACTION,
            "zz",
        );
        assert_fails(
            outloop_explain(b, a.as_ptr(), a.len(), b"nope".as_ptr(), 4, &mut o, &mut l),
            OUTLOOP_INVALID_JSON,
            "params_json",
        );

        let input = format!("token={ACME_SECRET} other={GLOBEX_SECRET}\0tail");
        let mut count = 0usize;
        assert_eq!(
            outloop_redact(b, input.as_ptr(), input.len(), &mut o, &mut l, &mut count),
            OUTLOOP_OK,
            "{:?}",
            last_error()
        );
        let out = take(o, l);
        assert_eq!(count, 1);
        // Only the workspace tenant's secrets are known to its redactor.
        assert_eq!(
            out,
            format!("token=[REDACTED:echo] other={GLOBEX_SECRET}\0tail")
        );
        assert_eq!(
            outloop_redact(b, ptr::null(), 0, &mut o, &mut l, ptr::null_mut()),
            OUTLOOP_OK
        );
        assert_eq!(take(o, l), "");
        assert_fails(
            outloop_redact(b, ptr::null(), 1, &mut o, &mut l, ptr::null_mut()),
            OUTLOOP_NULL_PARAMETER,
            "input",
        );

        // Alias requests refused before any upstream call: bad JSON, NULL pointers, a path
        // outside the alias's rules, another tenant, an unknown alias.
        let alias = |req: &str, tenant: Option<&str>, o: &mut *mut u8, l: &mut usize| {
            let (t, tl) = tenant.map_or((ptr::null(), 0), |t| (t.as_ptr(), t.len()));
            outloop_alias_request(b, req.as_ptr(), req.len(), t, tl, o, l)
        };
        for (req, status, needle) in [
            ("nope", OUTLOOP_INVALID_JSON, "request_json"),
            ("[1]", OUTLOOP_INVALID_JSON, "request_json"),
            (
                r#"{"alias":"httpbin","method":"GET"}"#,
                OUTLOOP_INVALID_JSON,
                "path",
            ),
            (
                r#"{"alias":"httpbin","method":"GET","path":"/bearer","extra":1}"#,
                OUTLOOP_INVALID_JSON,
                "extra",
            ),
            (
                r#"{"alias":"httpbin","method":"POST","path":"/anything/x","body":"a","body_base64":"YQ=="}"#,
                OUTLOOP_INVALID_JSON,
                "body_base64",
            ),
            (
                r#"{"alias":"httpbin","method":"POST","path":"/anything/x","body_base64":"%%"}"#,
                OUTLOOP_INVALID_JSON,
                "base64",
            ),
            (
                r#"{"alias":"httpbin","method":"GET","path":"/headers"}"#,
                OUTLOOP_POLICY_DENIED,
                "aliases.httpbin.allow",
            ),
            (
                r#"{"alias":"httpbin","method":"GET","path":"/anything/../bearer"}"#,
                OUTLOOP_INVALID_PARAMETER,
                "path",
            ),
            (
                r#"{"alias":"nosuch","method":"GET","path":"/x"}"#,
                OUTLOOP_UNKNOWN_ACTION,
                "nosuch",
            ),
        ] {
            assert_fails(alias(req, None, &mut o, &mut l), status, needle);
        }
        assert_fails(
            alias(
                r#"{"alias":"httpbin","method":"GET","path":"/bearer"}"#,
                Some("globex"),
                &mut o,
                &mut l,
            ),
            OUTLOOP_POLICY_DENIED,
            "globex",
        );
        let req = r#"{"alias":"httpbin","method":"GET","path":"/bearer"}"#;
        assert_fails(
            outloop_alias_request(b, ptr::null(), 0, ptr::null(), 0, &mut o, &mut l),
            OUTLOOP_NULL_PARAMETER,
            "request_json",
        );
        assert_fails(
            outloop_alias_request(b, req.as_ptr(), req.len(), ptr::null(), 3, &mut o, &mut l),
            OUTLOOP_NULL_PARAMETER,
            "tenant",
        );
        assert_fails(
            outloop_alias_request(
                b,
                req.as_ptr(),
                req.len(),
                ptr::null(),
                0,
                ptr::null_mut(),
                &mut l,
            ),
            OUTLOOP_NULL_PARAMETER,
            "out_json",
        );
        assert_fails(
            outloop_alias_request(
                ptr::null(),
                req.as_ptr(),
                req.len(),
                ptr::null(),
                0,
                &mut o,
                &mut l,
            ),
            OUTLOOP_NULL_PARAMETER,
            "broker",
        );
        assert_fails(
            outloop_audit_verify(b, ptr::null_mut()),
            OUTLOOP_NULL_PARAMETER,
            "out_records",
        );
        assert_fails(
            outloop_audit_verify(ptr::null(), ptr::null_mut()),
            OUTLOOP_NULL_PARAMETER,
            "broker",
        );

        // NULL frees are no-ops.
        outloop_buffer_free(ptr::null_mut(), 0);
        outloop_broker_free(ptr::null_mut());
        outloop_broker_free(b);
    }
}

#[test]
fn a_handle_serves_several_threads() {
    let h = home();
    let b = open(&h, &h.acme) as usize;
    let threads: Vec<_> = (0..4)
        .map(|_| {
            std::thread::spawn(move || {
                let (s, _) = call(b as *const outloop_broker, b"echo.delete", b"", None);
                (s, last_error())
            })
        })
        .collect();
    for t in threads {
        let (s, msg) = t.join().unwrap();
        assert_eq!(s, OUTLOOP_POLICY_DENIED);
        assert!(msg.unwrap().contains("denied"));
    }
    // SAFETY: every thread has finished; freed once.
    unsafe { outloop_broker_free(b as *mut outloop_broker) };
}

/// An allowed alias request through the real httpbin (`OUTLOOP_TEST_HTTPBIN`, set by
/// scripts/test.sh): `/bearer` echoes the token, `/anything` the body and query.
#[test]
fn alias_request_through_httpbin() {
    assert!(
        std::env::var("OUTLOOP_TEST_HTTPBIN").is_ok(),
        "OUTLOOP_TEST_HTTPBIN is not set: run the suite with scripts/test.sh, which starts httpbin"
    );
    let h = home();
    let b = open(&h, &h.acme);
    let (mut o, mut l) = (ptr::null_mut(), 0usize);
    // SAFETY: a live handle, valid pairs and writable out-parameters throughout.
    unsafe {
        let req = r#"{"alias":"httpbin","method":"GET","path":"/bearer","headers":{"Authorization":"Bearer FAKE-agent"}}"#;
        let t = "acme";
        assert_eq!(
            outloop_alias_request(
                b,
                req.as_ptr(),
                req.len(),
                t.as_ptr(),
                t.len(),
                &mut o,
                &mut l
            ),
            OUTLOOP_OK,
            "{:?}",
            last_error()
        );
        let text = take(o, l);
        assert!(!text.contains("FAKE"), "{text}");
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["action"], "alias:httpbin");
        assert_eq!(v["tenant"], "acme");
        assert_eq!(v["status"], 200);
        let body: serde_json::Value = serde_json::from_str(v["body"].as_str().unwrap()).unwrap();
        assert_eq!(body["token"], "[REDACTED:echo]");
        assert!(v["redactions"].as_u64().unwrap() >= 1);

        let req = r#"{"alias":"httpbin","method":"POST","path":"/anything/x","query":"a=1","headers":{"Content-Type":"application/octet-stream"},"body_base64":"AAEC/w=="}"#;
        assert_eq!(
            outloop_alias_request(b, req.as_ptr(), req.len(), ptr::null(), 0, &mut o, &mut l),
            OUTLOOP_OK,
            "{:?}",
            last_error()
        );
        let v: serde_json::Value = serde_json::from_str(&take(o, l)).unwrap();
        let body: serde_json::Value = serde_json::from_str(v["body"].as_str().unwrap()).unwrap();
        assert_eq!(body["args"]["a"], "1");
        assert_eq!(
            body["data"],
            "data:application/octet-stream;base64,AAEC/w=="
        );
        assert_eq!(v["tenant"], "acme");
        outloop_broker_free(b);
    }
}
