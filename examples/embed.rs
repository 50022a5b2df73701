#![allow(clippy::print_stdout)]
//! Embedding the Outloop broker in a Rust tool.
//!
//! Builds a broker from a host config held in memory, with an in-memory backend standing in
//! for the vault, then asks it what a workspace may do and what policy decides. Pass an
//! upstream base URL (e.g. a local httpbin) as the first argument to also perform a call:
//!
//! ```sh
//! cargo run -p outloop-examples --example embed -- http://127.0.0.1:8080
//! ```

use std::sync::Arc;

use outloop_core::broker::{Broker, CallRequest};
use outloop_core::config::{HostConfig, Paths};
use outloop_core::{BackendKind, MemoryBackend, SecretRef, SecretValue};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let upstream = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "https://api.example.com".into());
    let home = std::env::temp_dir().join(format!("outloop-embed-{}", std::process::id()));
    let workspace = home.join("clients/acme");
    std::fs::create_dir_all(&workspace)?;
    let workspace = workspace.canonicalize()?;

    let config = format!(
        r#"
[egress]
allow_private = ["127.0.0.0/8"]

[tenants.acme]
workspaces = [{workspace:?}]
credentials = {{ api = "vault://acme/api" }}

[actions."echo.bearer"]
description = "Reports the bearer token the upstream received"
credential = "api"
method = "GET"
url = "{upstream}/bearer"
auth = {{ type = "bearer" }}

[policy.tenants.acme]
allow = ["echo.*"]
"#
    );
    let paths = Paths::under(&home);
    let config = HostConfig::from_str_at(&paths, &paths.config_file(), &config)?;

    let vault = Arc::new(MemoryBackend::new("vault", BackendKind::Vault));
    vault.insert(
        &SecretRef::parse("vault://acme/api")?,
        SecretValue::from_string("FAKE-embedded-example-token".into()),
    )?;
    let broker = Broker::builder(config).backend(vault).build()?;

    let (ws, actions) = broker.actions_for(&workspace)?;
    println!(
        "workspace {} belongs to tenant `{}`",
        ws.root.display(),
        ws.tenant
    );
    for a in &actions {
        println!("  may use {} ({})", a.name, a.decision);
    }
    let e = broker.explain(&workspace, "echo.bearer", &Default::default())?;
    println!("explain echo.bearer: {} by {}", e.decision, e.rule);

    let denied = broker
        .call(CallRequest {
            workspace: workspace.clone(),
            tenant: Some("globex".into()),
            action: "echo.bearer".into(),
            params: Default::default(),
        })
        .await;
    if let Err(e) = denied {
        println!("wrong tenant: {} ({})", e.kind(), e);
    }

    if std::env::args().nth(1).is_some() {
        let result = broker
            .call(CallRequest {
                workspace,
                tenant: None,
                action: "echo.bearer".into(),
                params: Default::default(),
            })
            .await?;
        println!(
            "status {}, {} redaction(s):\n{}",
            result.status, result.redactions, result.body
        );
    }
    std::fs::remove_dir_all(&home)?;
    Ok(())
}
