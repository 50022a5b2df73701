use super::*;
use crate::ErrorKind;

fn load(text: &str) -> Result<HostConfig> {
    let dir = tempfile::tempdir().unwrap();
    let paths = Paths::under(dir.path());
    HostConfig::from_str_at(&paths, &paths.config_file(), text)
}

const GOOD: &str = r#"
[egress]
allow_private = ["127.0.0.0/8"]

[tenants.acme]
workspaces = ["/tmp/outloop-test-acme"]
[tenants.acme.credentials]
echo = "vault://acme/echo-token"
hubspot = { ref = "vault://acme/hubspot", pin = { url = "https://api.hubapi.com/account-info/v3/details", pointer = "/portalId", expect = "4455667" } }

[actions."hubspot.contacts.list"]
description = "List CRM contacts"
credential = "hubspot"
method = "GET"
url = "https://api.hubapi.com/crm/v3/objects/contacts"
query = { limit = "{limit}", after = "{after}" }
auth = { type = "bearer" }
[actions."hubspot.contacts.list".params]
limit = { type = "integer", min = 1, max = 100, default = 10 }
after = { type = "string", pattern = "^[0-9]+$", required = false }

[aliases.hubspot]
credential = "hubspot"
base_url = "https://api.hubapi.com"
auth = { type = "bearer" }
allow = ["GET /crm/v3/**", "POST /crm/v3/objects/contacts/search"]

[policy]
default = "deny"
[policy.tenants.acme]
allow = ["hubspot.*", "alias:hubspot"]
deny = ["hubspot.contacts.delete"]
"#;

#[test]
fn the_design_example_loads() {
    let cfg = load(GOOD).unwrap();
    assert!(cfg.backends.contains_key("vault"), "vault is implicit");
    let acme = &cfg.tenants["acme"];
    assert_eq!(
        acme.credentials["echo"].reference.to_string(),
        "vault://acme/echo-token"
    );
    assert_eq!(
        acme.credentials["hubspot"].pin.as_ref().unwrap().expect,
        "4455667"
    );
    let a = &cfg.actions["hubspot.contacts.list"];
    assert_eq!(a.method, HttpMethod::Get);
    assert_eq!(a.auth, Some(AuthConfig::Bearer));
    assert!(!a.params["after"].is_required());
    assert!(!a.params["limit"].is_required());
    assert_eq!(cfg.egress.allow_private.len(), 1);
}

/// Each bad config and the exact one-line error (file name replaced by `F`).
#[test]
fn errors_name_file_line_and_key() {
    let cases: &[(&str, &str)] = &[
        (
            "[tenants.acme]\nworkspace = []\n",
            "F:2: tenants.acme.workspace: unknown field `workspace`, expected one of `workspaces`, `credentials`, `canaries`",
        ),
        (
            "[tenants.acme]\ncanaries = [\"vault://acme/canary\", \"vault:/x\"]\n",
            "F:2: tenants.acme.canaries[1]: invalid secret reference `vault:/x`: expected `<scheme>://…`, e.g. `vault://acme/token`",
        ),
        (
            "[tenants.acme]\ncanaries = [\"doppler://p/c/CANARY\"]\n",
            "F:2: tenants.acme.canaries[0]: reference `doppler://p/c/CANARY` needs a `[backends.*]` table with kind = \"doppler\"",
        ),
        (
            "[egress]\nallow_private = [\"not-a-cidr\"]\n",
            "F:2: egress.allow_private[0]: invalid IP address syntax",
        ),
        (
            "[tenants.acme.credentials]\necho = \"vault:/x\"\n",
            "F:2: tenants.acme.credentials.echo: invalid secret reference `vault:/x`: expected `<scheme>://…`, e.g. `vault://acme/token`",
        ),
        (
            "[actions.a]\nmethod = \"FETCH\"\nurl = \"https://x.example/\"\n",
            "F:2: actions.a.method: unknown variant `FETCH`, expected one of `GET`, `HEAD`, `POST`, `PUT`, `PATCH`, `DELETE`",
        ),
        (
            "[actions.a]\nmethod = \"GET\"\nurl = \"https://{host}.example/\"\n[actions.a.params]\nhost = { type = \"string\" }\n",
            "F:3: actions.a.url: placeholders may appear only in the URL path, never in the scheme, host or port",
        ),
        (
            "[actions.a]\nmethod = \"GET\"\nurl = \"https://x.example/{id}\"\n",
            "F:1: actions.a: placeholder `{id}` has no declared parameter in `params`",
        ),
        (
            "[actions.a]\nmethod = \"GET\"\nurl = \"https://x.example/\"\ncredential = \"c\"\n",
            "F:1: actions.a.auth: required when `credential` is set",
        ),
        (
            "[policy.tenants.ghost]\nallow = [\"*\"]\n",
            "F:1: policy.tenants.ghost: no tenant `ghost` in [tenants]",
        ),
        (
            "[backends.x]\nkind = \"s3\"\n",
            "F:2: backends.x.kind: unknown backend kind `s3` (expected vault, keychain, secret-service, onepassword, infisical or doppler)",
        ),
        (
            "[tenants.acme.credentials]\nx = \"doppler://p/c/N\"\n",
            "F:2: tenants.acme.credentials.x: reference `doppler://p/c/N` needs a `[backends.*]` table with kind = \"doppler\"",
        ),
        (
            "[tenants.a]\nworkspaces = [\"/tmp/w\"]\n[tenants.b]\nworkspaces = [\"/tmp/w\"]\n",
            "F:4: tenants.b.workspaces: `/tmp/w` is already bound to tenant `a`",
        ),
        (
            "bogus = 1\n",
            "F:1: bogus: unknown field `bogus`, expected one of `include`, `backends`, `egress`, `redaction`, `tenants`, `actions`, `aliases`, `policy`",
        ),
        (
            "[actions.a\n",
            "F:1: invalid table header expected `.`, `]`",
        ),
    ];
    let mut wrong = Vec::new();
    for (text, want) in cases {
        let e = load(text).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config);
        let msg = e.to_string();
        let file = msg.split(':').next().unwrap();
        assert!(file.ends_with("config.toml"), "{msg}");
        let got = msg.replacen(file, "F", 1);
        if &got != want {
            wrong.push(format!("config:\n{text}\n got: {got}\nwant: {want}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n\n"));
}

#[test]
fn includes_merge_packs_and_report_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let paths = Paths::under(dir.path());
    std::fs::create_dir(dir.path().join("actions")).unwrap();
    std::fs::write(
        dir.path().join("actions/echo.toml"),
        "[actions.\"echo.get\"]\nmethod = \"GET\"\nurl = \"https://x.example/get\"\n",
    )
    .unwrap();
    let text = "include = [\"actions/*.toml\"]\n";
    let cfg = HostConfig::from_str_at(&paths, &paths.config_file(), text).unwrap();
    assert!(cfg.actions.contains_key("echo.get"));
    assert_eq!(
        cfg.sources["echo.get"],
        dir.path().join("actions/echo.toml")
    );

    let dup = "include = [\"actions/*.toml\"]\n[actions.\"echo.get\"]\nmethod = \"GET\"\nurl = \"https://y.example/\"\n";
    let e = HostConfig::from_str_at(&paths, &paths.config_file(), dup).unwrap_err();
    assert!(
        e.to_string()
            .contains("echo.toml:1: actions.\"echo.get\": action `echo.get` is already defined in"),
        "{e}"
    );

    std::fs::write(dir.path().join("actions/bad.toml"), "[tenants.x]\n").unwrap();
    let e = HostConfig::from_str_at(&paths, &paths.config_file(), text).unwrap_err();
    assert!(
        e.to_string().contains(
            "bad.toml:1: tenants: unknown field `tenants`, expected `actions` or `aliases`"
        ),
        "{e}"
    );
}

#[test]
fn config_inside_a_workspace_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ws = dir.path().canonicalize().unwrap();
    let paths = Paths::under(ws.join("home"));
    let text = format!(
        "[tenants.acme]\nworkspaces = [{:?}]\n",
        ws.to_str().unwrap()
    );
    let e = HostConfig::from_str_at(&paths, &paths.config_file(), &text).unwrap_err();
    assert!(
        e.to_string().contains("the config dir is inside workspace"),
        "{e}"
    );
}

#[test]
fn missing_file_says_run_init() {
    let dir = tempfile::tempdir().unwrap();
    let e = HostConfig::load(&Paths::under(dir.path())).unwrap_err();
    assert!(
        e.to_string()
            .ends_with("no config file; run `outloop init` to create one"),
        "{e}"
    );
}
