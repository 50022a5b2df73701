//! [`SecretRef`]: a URI naming one secret in one backend.
//!
//! The schemes and their shapes are fixed by DESIGN.md ("Secret references"):
//!
//! | backend | reference |
//! |---|---|
//! | vault | `vault://<path>` |
//! | Keychain | `keychain://<service>/<account>` |
//! | Secret Service | `secret-service://<service>/<account>` |
//! | 1Password | `op://<vault>/<item>[/<section>]/<field>[?attribute=…]` |
//! | Infisical | `infisical://<project-id>/<environment>/<secret-path…>/<NAME>` |
//! | Doppler | `doppler://<project>/<config>/<NAME>` |
//!
//! Segments are percent-decoded when parsed and percent-encoded when formatted, so
//! `parse(format(r)) == r` for every reference.

use std::fmt;
use std::str::FromStr;

use percent_encoding::{AsciiSet, CONTROLS, percent_decode_str, utf8_percent_encode};

use crate::error::{Error, ErrorKind, Result};

/// The kind of backend a reference points into, named by its URI scheme.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BackendKind {
    /// `vault://`: Outloop's embedded, age-encrypted vault (the default).
    Vault,
    /// `keychain://`: the macOS Keychain.
    Keychain,
    /// `secret-service://`: the freedesktop Secret Service (GNOME Keyring, KWallet).
    SecretService,
    /// `op://`: 1Password through the `op` CLI.
    OnePassword,
    /// `infisical://`: Infisical's REST API.
    Infisical,
    /// `doppler://`: Doppler's REST API.
    Doppler,
    /// `memory://`: the in-process memory backend used in tests and embedding.
    Memory,
}

impl BackendKind {
    /// Every kind, in a stable order.
    pub const ALL: [BackendKind; 7] = [
        BackendKind::Vault,
        BackendKind::Keychain,
        BackendKind::SecretService,
        BackendKind::OnePassword,
        BackendKind::Infisical,
        BackendKind::Doppler,
        BackendKind::Memory,
    ];

    /// The URI scheme, e.g. `"op"`.
    pub fn scheme(self) -> &'static str {
        match self {
            BackendKind::Vault => "vault",
            BackendKind::Keychain => "keychain",
            BackendKind::SecretService => "secret-service",
            BackendKind::OnePassword => "op",
            BackendKind::Infisical => "infisical",
            BackendKind::Doppler => "doppler",
            BackendKind::Memory => "memory",
        }
    }

    /// The `kind = "…"` name used in `[backends.*]` config tables, e.g. `"onepassword"`.
    pub fn config_name(self) -> &'static str {
        match self {
            BackendKind::Vault => "vault",
            BackendKind::Keychain => "keychain",
            BackendKind::SecretService => "secret-service",
            BackendKind::OnePassword => "onepassword",
            BackendKind::Infisical => "infisical",
            BackendKind::Doppler => "doppler",
            BackendKind::Memory => "memory",
        }
    }

    /// Looks a kind up by its config name (`kind = "onepassword"`); `None` if unknown.
    pub fn from_config_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.config_name() == name)
    }

    fn from_scheme(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.scheme() == s)
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.config_name())
    }
}

/// A parsed secret reference: the backend kind, the decoded path segments and, for
/// 1Password, the query attributes.
///
/// The meaning of the segments depends on the kind; use the accessors
/// ([`SecretRef::vault_path`], [`SecretRef::service_account`], …) rather than indexing.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SecretRef {
    kind: BackendKind,
    segments: Vec<String>,
    query: Vec<(String, String)>,
}

/// Characters percent-encoded in a formatted segment: controls, `%`, `/`, `?`, `#`, space and
/// the other characters that would change how the URI splits.
const SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'%')
    .add(b'/')
    .add(b'?')
    .add(b'#')
    .add(b'&')
    .add(b'=')
    .add(b'"')
    .add(b'<')
    .add(b'>');

fn invalid(raw: &str, why: impl fmt::Display) -> Error {
    // A reference names where a secret lives; it is not itself a secret, but cap its length.
    let shown: String = raw.chars().take(120).collect();
    Error::new(
        ErrorKind::InvalidReference,
        format!("invalid secret reference `{shown}`: {why}"),
    )
}

fn decode(raw: &str, seg: &str, idx: usize) -> Result<String> {
    let decoded = percent_decode_str(seg)
        .decode_utf8()
        .map_err(|_| {
            invalid(
                raw,
                format!("segment {} is not valid UTF-8 once decoded", idx + 1),
            )
        })?
        .into_owned();
    if decoded.is_empty() {
        return Err(invalid(raw, format!("segment {} is empty", idx + 1)));
    }
    if decoded.chars().any(char::is_control) {
        return Err(invalid(
            raw,
            format!("segment {} contains a control character", idx + 1),
        ));
    }
    Ok(decoded)
}

impl SecretRef {
    /// Parses a reference such as `vault://acme/echo-token`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidReference`] when the scheme is unknown, a segment is empty, a
    /// segment decodes to invalid UTF-8 or a control character, the number of segments does
    /// not fit the scheme, or a query is given where the scheme takes none. The message names
    /// the problem.
    pub fn parse(raw: &str) -> Result<Self> {
        let (scheme, rest) = raw
            .split_once("://")
            .ok_or_else(|| invalid(raw, "expected `<scheme>://…`, e.g. `vault://acme/token`"))?;
        let kind = BackendKind::from_scheme(scheme).ok_or_else(|| {
            invalid(
                raw,
                format!(
                    "unknown scheme `{scheme}` (expected one of vault, keychain, secret-service, op, infisical, doppler)"
                ),
            )
        })?;
        let (path, query) = match rest.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (rest, None),
        };
        if path.contains('#') {
            return Err(invalid(raw, "a fragment (`#`) is not allowed"));
        }
        if path.is_empty() {
            return Err(invalid(raw, "the path is empty"));
        }
        let segments = path
            .split('/')
            .enumerate()
            .map(|(i, s)| decode(raw, s, i))
            .collect::<Result<Vec<_>>>()?;

        let mut query_pairs = Vec::new();
        if let Some(q) = query {
            if kind != BackendKind::OnePassword {
                return Err(invalid(
                    raw,
                    format!("`{}://` references take no `?query`", kind.scheme()),
                ));
            }
            for (i, pair) in q.split('&').enumerate() {
                let (k, v) = pair.split_once('=').ok_or_else(|| {
                    invalid(raw, format!("query item {} is not `key=value`", i + 1))
                })?;
                query_pairs.push((decode(raw, k, i)?, decode(raw, v, i)?));
            }
        }

        if matches!(kind, BackendKind::Vault | BackendKind::Memory)
            && let Some(i) = segments
                .iter()
                .position(|s| s == "." || s == ".." || s.contains('/'))
        {
            return Err(invalid(
                raw,
                format!(
                    "segment {} (`.`, `..` or an encoded `/`) is not allowed in a vault path",
                    i + 1
                ),
            ));
        }
        let n = segments.len();
        let ok = match kind {
            BackendKind::Vault | BackendKind::Memory => n >= 1,
            BackendKind::Keychain | BackendKind::SecretService => n == 2,
            BackendKind::OnePassword => n == 3 || n == 4,
            BackendKind::Infisical => n >= 3,
            BackendKind::Doppler => n == 3,
        };
        if !ok {
            let expected = match kind {
                BackendKind::Vault => "`vault://<path>`",
                BackendKind::Memory => "`memory://<path>`",
                BackendKind::Keychain => "`keychain://<service>/<account>`",
                BackendKind::SecretService => "`secret-service://<service>/<account>`",
                BackendKind::OnePassword => "`op://<vault>/<item>[/<section>]/<field>`",
                BackendKind::Infisical => {
                    "`infisical://<project-id>/<environment>/<secret-path…>/<NAME>`"
                }
                BackendKind::Doppler => "`doppler://<project>/<config>/<NAME>`",
            };
            return Err(invalid(raw, format!("{n} segment(s); expected {expected}")));
        }
        Ok(Self {
            kind,
            segments,
            query: query_pairs,
        })
    }

    /// Builds a reference from a kind and already-decoded segments.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidReference`] when the result would not parse back (see
    /// [`SecretRef::parse`]).
    pub fn from_parts(kind: BackendKind, segments: &[&str]) -> Result<Self> {
        let r = Self {
            kind,
            segments: segments.iter().map(|s| (*s).to_owned()).collect(),
            query: Vec::new(),
        };
        // Round-trip through the text form so the same rules apply to both constructors.
        Self::parse(&r.to_string())
    }

    /// The backend kind this reference points into.
    pub fn kind(&self) -> BackendKind {
        self.kind
    }

    /// The decoded path segments.
    pub fn segments(&self) -> &[String] {
        &self.segments
    }

    /// The decoded query attributes (1Password only; empty otherwise).
    pub fn query(&self) -> &[(String, String)] {
        &self.query
    }

    /// For `vault://` and `memory://`: the path, segments joined with `/`.
    pub fn vault_path(&self) -> Option<String> {
        matches!(self.kind, BackendKind::Vault | BackendKind::Memory)
            .then(|| self.segments.join("/"))
    }

    /// For `keychain://` and `secret-service://`: `(service, account)`.
    pub fn service_account(&self) -> Option<(&str, &str)> {
        match self.kind {
            BackendKind::Keychain | BackendKind::SecretService => {
                Some((&self.segments[0], &self.segments[1]))
            }
            _ => None,
        }
    }
}

impl fmt::Display for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://", self.kind.scheme())?;
        for (i, s) in self.segments.iter().enumerate() {
            if i > 0 {
                f.write_str("/")?;
            }
            write!(f, "{}", utf8_percent_encode(s, SEGMENT))?;
        }
        for (i, (k, v)) in self.query.iter().enumerate() {
            f.write_str(if i == 0 { "?" } else { "&" })?;
            write!(
                f,
                "{}={}",
                utf8_percent_encode(k, SEGMENT),
                utf8_percent_encode(v, SEGMENT)
            )?;
        }
        Ok(())
    }
}

impl fmt::Debug for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretRef({self})")
    }
}

impl FromStr for SecretRef {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

impl serde::Serialize for SecretRef {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for SecretRef {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(|e| serde::de::Error::custom(e.message()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_formats_every_scheme() {
        let cases = [
            (
                "vault://acme/echo-token",
                BackendKind::Vault,
                vec!["acme", "echo-token"],
            ),
            (
                "keychain://outloop/infisical-client-secret",
                BackendKind::Keychain,
                vec!["outloop", "infisical-client-secret"],
            ),
            (
                "secret-service://outloop/acme",
                BackendKind::SecretService,
                vec!["outloop", "acme"],
            ),
            (
                "op://Acme/HubSpot/credential",
                BackendKind::OnePassword,
                vec!["Acme", "HubSpot", "credential"],
            ),
            (
                "op://Acme/HubSpot/API%20Keys/credential",
                BackendKind::OnePassword,
                vec!["Acme", "HubSpot", "API Keys", "credential"],
            ),
            (
                "infisical://p-123/prod/app/db/PASSWORD",
                BackendKind::Infisical,
                vec!["p-123", "prod", "app", "db", "PASSWORD"],
            ),
            (
                "doppler://web/prd/STRIPE_KEY",
                BackendKind::Doppler,
                vec!["web", "prd", "STRIPE_KEY"],
            ),
        ];
        for (raw, kind, segs) in cases {
            let r = SecretRef::parse(raw).unwrap();
            assert_eq!(r.kind(), kind, "{raw}");
            assert_eq!(r.segments(), segs.as_slice(), "{raw}");
            assert_eq!(r.to_string(), raw, "{raw}");
            assert_eq!(SecretRef::parse(&r.to_string()).unwrap(), r);
        }
    }

    #[test]
    fn op_query_attributes() {
        let r = SecretRef::parse("op://v/i/f?attribute=otp").unwrap();
        assert_eq!(r.query(), &[("attribute".to_owned(), "otp".to_owned())]);
        assert_eq!(r.to_string(), "op://v/i/f?attribute=otp");
    }

    #[test]
    fn special_characters_round_trip() {
        let r = SecretRef::from_parts(BackendKind::OnePassword, &["My Vault", "a/b & c", "f.x"])
            .unwrap();
        assert_eq!(r.to_string(), "op://My%20Vault/a%2Fb%20%26%20c/f.x");
        assert_eq!(SecretRef::parse(&r.to_string()).unwrap(), r);
    }

    #[test]
    fn malformed_references_name_the_problem() {
        let cases = [
            ("acme/token", "expected `<scheme>://"),
            ("ftp://x/y", "unknown scheme `ftp`"),
            ("vault://", "the path is empty"),
            ("vault://acme//token", "segment 2 is empty"),
            (
                "keychain://only-service",
                "1 segment(s); expected `keychain://<service>/<account>`",
            ),
            ("doppler://a/b", "expected `doppler://"),
            ("op://v/i", "expected `op://"),
            ("vault://a/%0Ab", "control character"),
            ("vault://a/%FF", "not valid UTF-8"),
            ("vault://a?x=1", "take no `?query`"),
            ("vault://a#frag", "fragment"),
            (
                "vault://acme/../globex/x",
                "segment 2 (`.`, `..` or an encoded `/`)",
            ),
            ("vault://acme/%2e%2e", "segment 2"),
            ("vault://a%2Fb/c", "segment 1"),
        ];
        for (raw, needle) in cases {
            let e = SecretRef::parse(raw).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidReference, "{raw}");
            assert!(e.to_string().contains(needle), "{raw}: {e}");
        }
    }
}
