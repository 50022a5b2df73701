//! `Pack` (standalone pack validation), `write` and `credential_headers`.

use super::*;
use crate::ErrorKind;

fn pack(text: &str) -> Result<Pack> {
    Pack::from_str_at(Path::new("/packs/test.toml"), text)
}

const SEARCH: &str = r#"
# a comment line
[actions."crm.contacts.search"]
description = "Search contacts"
credential = "crm"
method = "POST"
url = "https://api.example.com/crm/v3/objects/contacts/search"
auth = { type = "bearer" }
write = false
body = { query = "{query}" }
params.query = { type = "string" }

[actions."crm.contacts.create"]
credential = "crm"
method = "POST"
url = "https://api.example.com/crm/v3/objects/contacts"
auth = { type = "bearer" }
body = { properties = { email = "{email}" } }
params.email = { type = "string" }

[actions."crm.contacts.list"]
credential = "crm"
method = "GET"
url = "https://api.example.com/crm/v3/objects/contacts"
auth = { type = "bearer" }

[actions."ads.search"]
credential = "ads"
method = "POST"
url = "https://ads.example.com/v1/customers/{customer}/search"
auth = { type = "bearer" }
credential_headers = { "developer-token" = "ads-dev" }
write = false
body = { query = "{query}" }
params.customer = { type = "string", pattern = "^[0-9]+$" }
params.query = { type = "string" }

[aliases.crm]
credential = "crm"
base_url = "https://api.example.com"
auth = { type = "bearer" }
allow = ["GET /crm/**"]
"#;

#[test]
fn a_good_pack_loads_standalone_with_write_defaults() {
    let p = pack(SEARCH).unwrap();
    assert_eq!(p.actions.len(), 4);
    assert_eq!(p.aliases.len(), 1);
    assert!(
        !p.actions["crm.contacts.search"].is_write(),
        "write = false wins over POST"
    );
    assert!(
        p.actions["crm.contacts.create"].is_write(),
        "POST defaults to write"
    );
    assert!(
        !p.actions["crm.contacts.list"].is_write(),
        "GET defaults to read"
    );
    assert_eq!(
        p.actions["ads.search"].credential_names(),
        vec!["ads".to_owned(), "ads-dev".to_owned()]
    );
}

#[test]
fn pack_errors_are_one_line_with_file_line_and_key() {
    // (pack text, expected substring of the one-line error)
    let cases: &[(&str, &str)] = &[
        (
            "[actions.a]\nmethod = \"GET\"\nurl = \"https://{host}/x\"\n",
            "/packs/test.toml:3: actions.a.url: placeholders may appear only in the URL path",
        ),
        (
            "[actions.a]\nmethod = \"GET\"\nurl = \"https://h.example/x\"\nwrite = \"yes\"\n",
            "/packs/test.toml:4: actions.a.write:",
        ),
        (
            "[actions.a]\nmethod = \"GET\"\nurl = \"https://h.example/{id}\"\n",
            "actions.a: placeholder `{id}` has no declared parameter",
        ),
        (
            "[tenants.acme]\nworkspaces = []\n",
            "/packs/test.toml:1: tenants: unknown field `tenants`",
        ),
        (
            "[actions.\"a b\"]\nmethod = \"GET\"\nurl = \"https://h.example/\"\n",
            "actions.\"a b\": action names use letters",
        ),
        (
            "\n[actions.a]\ncredential = \"c\"\nauth = { type = \"bearer\" }\nmethod = \"GET\"\nurl = \"https://h.example/\"\ncredential_headers = { Authorization = \"d\" }\n",
            "/packs/test.toml:7: actions.a.credential_headers.Authorization: frames, routes or authorizes",
        ),
        (
            "[actions.a]\nmethod = \"GET\"\nurl = \"https://h.example/\"\nheaders = { x-token = \"t\" }\ncredential_headers = { X-Token = \"d\" }\n",
            "actions.a.credential_headers.X-Token: is also set in `headers`",
        ),
        (
            "[actions.a]\ncredential = \"c\"\nmethod = \"GET\"\nurl = \"https://h.example/\"\nauth = { type = \"header\", name = \"X-Key\" }\ncredential_headers = { x-key = \"d\" }\n",
            "actions.a.credential_headers.x-key: is also the `auth` header",
        ),
        (
            "[actions.a]\nmethod = \"GET\"\nurl = \"https://h.example/\"\ncredential_headers = { X-Dev = \"bad name\" }\n",
            "actions.a.credential_headers.X-Dev: credential names use",
        ),
        (
            "[aliases.x]\nbase_url = \"ftp://h.example\"\n",
            "aliases.x.base_url: scheme `ftp` is not http or https",
        ),
    ];
    for (text, want) in cases {
        let e = pack(text).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config, "{text}");
        let msg = e.message();
        assert!(!msg.contains('\n'), "one line: {msg}");
        assert!(
            msg.contains(want),
            "for\n{text}\nwant `{want}`\ngot  `{msg}`"
        );
    }
}

#[test]
fn a_missing_pack_file_is_named() {
    let e = Pack::load(Path::new("/nonexistent/outloop/pack.toml")).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config);
    assert!(
        e.message()
            .contains("/nonexistent/outloop/pack.toml: no such action pack"),
        "{e}"
    );
}

#[test]
fn credential_headers_are_checked_through_include_too() {
    let dir = tempfile::tempdir().unwrap();
    let paths = Paths::under(dir.path());
    std::fs::create_dir_all(dir.path().join("actions")).unwrap();
    std::fs::write(
        dir.path().join("actions/ads.toml"),
        "[actions.a]\nmethod = \"GET\"\nurl = \"https://h.example/\"\ncredential_headers = { Host = \"d\" }\n",
    )
    .unwrap();
    let e = HostConfig::from_str_at(
        &paths,
        &paths.config_file(),
        "include = [\"actions/*.toml\"]\n",
    )
    .unwrap_err();
    let msg = e.message();
    assert!(
        msg.contains("ads.toml:4: actions.a.credential_headers.Host:"),
        "{msg}"
    );
}

#[test]
fn form_bodies_exclude_json_bodies_and_reads() {
    let ok = pack(
        "[actions.a]\nmethod = \"POST\"\nurl = \"https://h.example/v1/customers\"\nform = { email = \"{email}\" }\nparams.email = { type = \"string\" }\n",
    )
    .unwrap();
    assert_eq!(ok.actions["a"].form["email"], "{email}");
    for (text, want) in [
        (
            "[actions.a]\nmethod = \"POST\"\nurl = \"https://h.example/\"\nbody = { x = 1 }\nform = { y = \"2\" }\n",
            "actions.a.form: use either `body` (JSON) or `form`, not both",
        ),
        (
            "[actions.a]\nmethod = \"GET\"\nurl = \"https://h.example/\"\nform = { y = \"2\" }\n",
            "actions.a.form: a GET request has no body",
        ),
        (
            "[actions.a]\nmethod = \"POST\"\nurl = \"https://h.example/\"\nform = { y = \"{nope}\" }\n",
            "actions.a: placeholder `{nope}` has no declared parameter",
        ),
    ] {
        let e = pack(text).unwrap_err();
        assert!(e.message().contains(want), "want `{want}`, got `{e}`");
    }
}
