//! `outloop doctor`: for each configured backend, whether it is installed, reachable and
//! authenticated, found without reading any secret value
//! ([`SecretBackend::health`](outloop_core::backend::SecretBackend::health)).
//!
//! Human output is a table, then one line per probe that failed, one per probe skipped on a
//! backend with no failure (`name: what: not checked: reason`), and a summary: `all N
//! backend(s) OK` only when every probe of every backend passed; otherwise `K of N backend(s)
//! not OK` and/or `M not checked`. A backend is *not checked* when none of its probes failed
//! but at least one was skipped (the check was impossible, e.g. a backend without a health
//! check, or `op` refused before contacting 1Password): it does not fail doctor, but it is
//! never counted as OK. `--json` prints one object: `{"ok": bool, "not_checked": M,
//! "backends": [{"name", "kind", "ok", "checked", "installed", "reachable",
//! "authenticated"}]}`, each probe `{"status": "ok"|"failed"|"skipped", …}`. Exit 0 when no
//! probe failed (skipped ones included), 4 (backend error) when one did.

use outloop_core::Result;
use outloop_core::backend::{Health, Probe};
use outloop_core::config::{HostConfig, Paths};
use serde::Serialize;

/// One backend's row.
#[derive(Serialize)]
struct Row {
    name: String,
    kind: String,
    ok: bool,
    /// Every probe ran (none skipped).
    checked: bool,
    #[serde(flatten)]
    health: Health,
}

/// Runs `outloop doctor [--json]`; returns the exit code (0 all OK, 4 otherwise).
///
/// # Errors
///
/// [`outloop_core::ErrorKind::Config`] when the host config or a backend's settings are
/// invalid (exit 2).
pub async fn run(paths: &Paths, json: bool) -> Result<u8> {
    let cfg = HostConfig::load(paths)?;
    let backends = outloop_backends::from_config(&cfg)?;
    let mut rows = Vec::new();
    for b in &backends {
        let health = b.health().await;
        rows.push(Row {
            name: b.name().to_owned(),
            kind: b.kind().config_name().to_owned(),
            ok: health.is_ok(),
            checked: !probes(&health).iter().any(|(_, p)| p.word() == "skipped"),
            health,
        });
    }
    let all_ok = rows.iter().all(|r| r.ok);
    if json {
        let not_checked = rows.iter().filter(|r| r.ok && !r.checked).count();
        let out = serde_json::json!({ "ok": all_ok, "not_checked": not_checked, "backends": rows });
        outln!("{out}");
    } else {
        print_table(&rows);
    }
    Ok(if all_ok { 0 } else { 4 })
}

/// The three probes with their names, in table order.
fn probes(h: &Health) -> [(&'static str, &Probe); 3] {
    [
        ("installed", &h.installed),
        ("reachable", &h.reachable),
        ("authenticated", &h.authenticated),
    ]
}

fn print_table(rows: &[Row]) {
    let head = ["BACKEND", "KIND", "INSTALLED", "REACHABLE", "AUTHENTICATED"];
    let cells: Vec<[String; 5]> = rows
        .iter()
        .map(|r| {
            [
                r.name.clone(),
                r.kind.clone(),
                r.health.installed.word().to_owned(),
                r.health.reachable.word().to_owned(),
                r.health.authenticated.word().to_owned(),
            ]
        })
        .collect();
    let mut widths = head.map(str::len);
    for c in &cells {
        for (w, cell) in widths.iter_mut().zip(c) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |c: [&str; 5]| {
        let mut s = String::new();
        for (i, (cell, w)) in c.iter().zip(widths).enumerate() {
            if i + 1 == c.len() {
                s.push_str(cell);
            } else {
                s.push_str(&format!("{cell:<w$}  "));
            }
        }
        s
    };
    outln!("{}", line(head));
    for c in &cells {
        outln!(
            "{}",
            line([&c[0], &c[1], &c[2], &c[3], &c[4]].map(String::as_str))
        );
    }
    for r in rows {
        for (what, p) in probes(&r.health) {
            if p.is_failed() {
                outln!("{}: {what}: {}", r.name, p.text());
            } else if r.ok && p.word() == "skipped" {
                outln!("{}: {what}: not checked: {}", r.name, p.text());
            }
        }
    }
    outln!("{}", summary(rows));
}

/// The last line: `all N backend(s) OK` only when every probe passed.
fn summary(rows: &[Row]) -> String {
    let bad = rows.iter().filter(|r| !r.ok).count();
    let unchecked = rows.iter().filter(|r| r.ok && !r.checked).count();
    let n = rows.len();
    match (bad, unchecked) {
        (0, 0) => format!("all {n} backend(s) OK"),
        (0, u) => format!("{} of {n} backend(s) OK, {u} not checked", n - u),
        (b, 0) => format!("{b} of {n} backend(s) not OK"),
        (b, u) => format!("{b} of {n} backend(s) not OK, {u} not checked"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use outloop_core::{Error, ErrorKind};

    fn row(name: &str, health: Health) -> Row {
        Row {
            name: name.into(),
            kind: "vault".into(),
            ok: health.is_ok(),
            checked: !probes(&health).iter().any(|(_, p)| p.word() == "skipped"),
            health,
        }
    }

    #[test]
    fn skipped_checks_are_not_counted_as_ok() {
        let ok = || Health {
            installed: Probe::ok("x"),
            reachable: Probe::ok("x"),
            authenticated: Probe::ok("x"),
        };
        let skipped = || Health {
            installed: Probe::ok("x"),
            reachable: Probe::skipped("this backend has no health check"),
            authenticated: Probe::skipped("this backend has no health check"),
        };
        let failed = || Health::not_installed(&Error::new(ErrorKind::Unavailable, "no op"));
        assert_eq!(
            summary(&[row("a", ok()), row("b", ok())]),
            "all 2 backend(s) OK"
        );
        assert_eq!(
            summary(&[row("a", ok()), row("b", skipped())]),
            "1 of 2 backend(s) OK, 1 not checked"
        );
        assert_eq!(
            summary(&[row("a", failed()), row("b", ok())]),
            "1 of 2 backend(s) not OK"
        );
        assert_eq!(
            summary(&[row("a", failed()), row("b", skipped()), row("c", ok())]),
            "1 of 3 backend(s) not OK, 1 not checked"
        );
        // A failed backend's skipped probes are consequences, not "not checked".
        let f = row("a", failed());
        assert!(!f.ok && !f.checked);
        let json = serde_json::to_value(row("b", skipped())).unwrap();
        assert_eq!(json["ok"], true);
        assert_eq!(json["checked"], false);
    }
}
