//! `outloop actions --pack <file>`: validates one action pack on its own and lists what it
//! defines.
//!
//! The pack is parsed with the same config code the host config uses for `include`
//! ([`outloop_core::config::Pack`]), without tenants or policy, so a pack can be checked
//! before it is installed. Errors are one line, `file:line: key: problem`.

use std::path::Path;

use outloop_core::Result;
use outloop_core::config::{ActionConfig, AliasConfig, AuthConfig, Pack, ParamType};
use serde_json::{Value, json};

/// Validates the pack at `file` and prints its actions and aliases (`json`: one object).
///
/// # Errors
///
/// [`outloop_core::ErrorKind::Config`] when the pack cannot be read or is invalid.
pub fn run(file: &Path, json: bool) -> Result<u8> {
    let pack = Pack::load(file)?;
    if json {
        let v = json!({
            "pack": pack.file.display().to_string(),
            "actions": pack.actions.iter().map(|(n, a)| action_json(n, a)).collect::<Vec<_>>(),
            "aliases": pack.aliases.iter().map(|(n, a)| alias_json(n, a)).collect::<Vec<_>>(),
        });
        outln!("{v}");
        return Ok(0);
    }
    outln!(
        "pack {}: {} action{}, {} alias{}",
        pack.file.display(),
        pack.actions.len(),
        if pack.actions.len() == 1 { "" } else { "s" },
        pack.aliases.len(),
        if pack.aliases.len() == 1 { "" } else { "es" },
    );
    let name_w = pack.actions.keys().map(String::len).max().unwrap_or(0);
    let url_w = pack
        .actions
        .values()
        .map(|a| a.url.len())
        .max()
        .unwrap_or(0);
    for (name, a) in &pack.actions {
        let creds = a.credential_names();
        let creds = if creds.is_empty() {
            "-".to_owned()
        } else {
            creds.join("+")
        };
        outln!(
            "  {name:name_w$}  {:5}  {:6} {:url_w$}  {creds}  {}",
            if a.is_write() { "write" } else { "read" },
            a.method.as_str(),
            a.url,
            a.description.as_deref().unwrap_or("")
        );
    }
    for (name, a) in &pack.aliases {
        outln!(
            "  alias:{name}  {}  {}  {}",
            a.base_url,
            a.credential.as_deref().unwrap_or("-"),
            a.description.as_deref().unwrap_or("")
        );
    }
    Ok(0)
}

/// The auth placement as JSON: `{"type": "bearer"}`, `{"type": "header", "name": …,
/// "format": …}`, `{"type": "basic", "username": …}` or `{"type": "query", "name": …}`.
fn auth_json(auth: Option<&AuthConfig>) -> Value {
    match auth {
        None => Value::Null,
        Some(AuthConfig::Bearer) => json!({ "type": "bearer" }),
        Some(AuthConfig::Header { name, format }) => json!({
            "type": "header",
            "name": name,
            "format": format.as_deref().unwrap_or("{secret}"),
        }),
        Some(AuthConfig::Basic { username }) => json!({ "type": "basic", "username": username }),
        Some(AuthConfig::Query { name }) => json!({ "type": "query", "name": name }),
    }
}

fn action_json(name: &str, a: &ActionConfig) -> Value {
    let params: serde_json::Map<String, Value> = a
        .params
        .iter()
        .map(|(p, spec)| {
            let ty = match spec.ty {
                ParamType::String => "string",
                ParamType::Integer => "integer",
                ParamType::Boolean => "boolean",
            };
            (
                p.clone(),
                json!({ "type": ty, "required": spec.is_required() }),
            )
        })
        .collect();
    json!({
        "name": name,
        "description": a.description,
        "method": a.method.as_str(),
        "url": a.url,
        "credential": a.credential,
        "auth": auth_json(a.auth.as_ref()),
        "credential_headers": a.credential_headers,
        "credentials": a.credential_names(),
        "headers": a.headers,
        "query": a.query,
        "body": a.body,
        "form": a.form,
        "write": a.is_write(),
        "params": params,
    })
}

fn alias_json(name: &str, a: &AliasConfig) -> Value {
    json!({
        "name": name,
        "description": a.description,
        "base_url": a.base_url,
        "credential": a.credential,
        "auth": auth_json(a.auth.as_ref()),
        "allow": a.allow,
    })
}
