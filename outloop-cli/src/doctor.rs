//! `outloop doctor`: for each configured backend, whether it is installed, reachable and
//! authenticated, found without reading any secret value
//! ([`SecretBackend::health`](outloop_core::backend::SecretBackend::health)).
//!
//! Human output is a table, then one line per probe that did not pass; `--json` prints one
//! object: `{"ok": bool, "backends": [{"name", "kind", "ok", "installed", "reachable",
//! "authenticated"}]}`, each probe `{"status": "ok"|"failed"|"skipped", …}`. Exit 0 when every
//! backend is OK, 4 (backend error) when one is not.

use outloop_core::Result;
use outloop_core::backend::Health;
use outloop_core::config::{HostConfig, Paths};
use serde::Serialize;

/// One backend's row.
#[derive(Serialize)]
struct Row {
    name: String,
    kind: String,
    ok: bool,
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
            health,
        });
    }
    let all_ok = rows.iter().all(|r| r.ok);
    if json {
        let out = serde_json::json!({ "ok": all_ok, "backends": rows });
        outln!("{out}");
    } else {
        print_table(&rows);
    }
    Ok(if all_ok { 0 } else { 4 })
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
        for (what, p) in [
            ("installed", &r.health.installed),
            ("reachable", &r.health.reachable),
            ("authenticated", &r.health.authenticated),
        ] {
            if p.is_failed() {
                outln!("{}: {what}: {}", r.name, p.text());
            }
        }
    }
    let bad = rows.iter().filter(|r| !r.ok).count();
    if bad == 0 {
        outln!("all {} backend(s) OK", rows.len());
    } else {
        outln!("{bad} of {} backend(s) not OK", rows.len());
    }
}
