//! `from_config` builds the three vendor backends from a host config and refuses literal
//! tokens, cycles and unknown keys with a message naming the key.

use outloop_backends::from_config;
use outloop_core::config::{HostConfig, Paths};
use outloop_core::{BackendKind, ErrorKind};

use crate::fixtures::assert_no_leak;

fn load(
    extra: &str,
) -> outloop_core::Result<Vec<std::sync::Arc<dyn outloop_core::backend::SecretBackend>>> {
    let t = tempfile::tempdir().unwrap();
    let paths = Paths::under(t.path().join("home"));
    let file = paths.config_file();
    let text = format!("[backends.vault]\nkind = \"vault\"\n{extra}");
    let cfg = HostConfig::from_str_at(&paths, &file, &text)?;
    from_config(&cfg)
}

#[test]
fn builds_the_three_vendor_backends_from_the_host_config() {
    let backends = load(
        r#"
[backends.op]
kind = "onepassword"
account = "example.1password.com"
service_account_token = "vault://outloop/op-token"

[backends.infisical]
kind = "infisical"
url = "https://eu.infisical.com/api"
client_id = "5b6f2a9e-0c1d-4e8f-9a7b-000000000001"
client_secret = "vault://outloop/infisical-client-secret"

[backends.doppler]
kind = "doppler"
token = "infisical://p-1/prod/DOPPLER_TOKEN"
value = "raw"
"#,
    )
    .unwrap();
    let mut kinds: Vec<BackendKind> = backends.iter().map(|b| b.kind()).collect();
    kinds.sort();
    assert_eq!(
        kinds,
        vec![
            BackendKind::Vault,
            BackendKind::OnePassword,
            BackendKind::Infisical,
            BackendKind::Doppler
        ]
    );
}

#[test]
fn literal_tokens_cycles_and_unknown_keys_are_config_errors_naming_the_key() {
    let token = "dp.st.dev.FAKEliteral0000000000000000000000000000000013";
    let cases = [
        (format!("[backends.doppler]\nkind = \"doppler\"\ntoken = \"{token}\"\n"), "backends.doppler.token"),
        (
            "[backends.infisical]\nkind = \"infisical\"\nclient_id = \"x\"\nclient_secret = \"doppler://p/c/SECRET\"\n[backends.doppler]\nkind = \"doppler\"\ntoken = \"infisical://p/dev/TOKEN\"\n".to_owned(),
            "doppler -> infisical -> doppler",
        ),
        ("[backends.infisical]\nkind = \"infisical\"\nclient_secret = \"vault://o/s\"\n".to_owned(), "backends.infisical.client_id"),
        ("[backends.op]\nkind = \"onepassword\"\nsession = \"x\"\n".to_owned(), "backends.op.session"),
        ("[backends.doppler]\nkind = \"doppler\"\ntoken = \"keychain://o/d\"\n".to_owned(), "kind = \"keychain\""),
        ("[backends.doppler]\nkind = \"doppler\"\ntoken = \"vault://o/d\"\nvalue = \"both\"\n".to_owned(), "backends.doppler.value"),
    ];
    for (extra, needle) in cases {
        let e = load(&extra).err().expect("refused");
        assert_eq!(e.kind(), ErrorKind::Config, "{e}");
        assert!(e.message().contains(needle), "{needle}: {e}");
        assert_no_leak(&format!("{e} {e:?}"), &[token]);
    }
}
