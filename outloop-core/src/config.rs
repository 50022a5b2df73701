//! The host config: where it lives, its shape, loading with includes, and validation.
//!
//! The config is read only from `$OUTLOOP_HOME/config.toml` or the platform config dir, never
//! from a workspace, so a workspace cannot grant itself anything. The shape is the contract in
//! DESIGN.md ("Host config"). Every error names the file, the line and the key.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Component, Path, PathBuf};

use ipnet::IpNet;
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::reference::{BackendKind, SecretRef};

/// The default response size cap: 10 MiB.
pub const DEFAULT_MAX_RESPONSE_BYTES: u64 = 10 * 1024 * 1024;
/// The default total timeout of one upstream call, in seconds.
pub const DEFAULT_TIMEOUT_SECS: u64 = 30;
/// The default redaction floor: secrets shorter than this many bytes are refused.
pub const DEFAULT_REDACTION_FLOOR: usize = 8;

/// Where Outloop keeps its files.
///
/// With `OUTLOOP_HOME` set, everything (config, vault, identity, audit) lives under it, so tests
/// and several setups never share state. Otherwise the platform directories are used:
/// config in `~/.config/outloop` (Linux) or `~/Library/Application Support/outloop` (macOS),
/// data in the platform data dir, state in the platform state dir (the data dir where the
/// platform has none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    /// Holds `config.toml`, action packs and (without an OS keystore) the vault identity.
    pub config_dir: PathBuf,
    /// Holds the vault file.
    pub data_dir: PathBuf,
    /// Holds the audit log.
    pub state_dir: PathBuf,
}

impl Paths {
    /// All paths under one directory, as `OUTLOOP_HOME` does.
    pub fn under(home: impl Into<PathBuf>) -> Self {
        let home = home.into();
        Self {
            config_dir: home.clone(),
            data_dir: home.clone(),
            state_dir: home,
        }
    }

    /// Paths from `OUTLOOP_HOME` when set and non-empty, else the platform directories.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Config`] when `OUTLOOP_HOME` is relative, or when no home directory can be
    /// found for the platform directories.
    ///
    /// [`ErrorKind::Config`]: crate::ErrorKind::Config
    pub fn from_env() -> Result<Self> {
        match std::env::var_os("OUTLOOP_HOME") {
            Some(h) if h.is_empty() => Err(Error::config(
                "OUTLOOP_HOME is set but empty; unset it to use the platform directories, or give an absolute path",
            )),
            Some(h) => {
                let p = PathBuf::from(h);
                if !p.is_absolute() {
                    return Err(Error::config(format!(
                        "OUTLOOP_HOME must be an absolute path, got `{}`",
                        p.display()
                    )));
                }
                Ok(Self::under(p))
            }
            _ => {
                let no_home =
                    || Error::config("cannot find the platform config dir; set OUTLOOP_HOME");
                let config_dir = dirs::config_dir().ok_or_else(no_home)?.join("outloop");
                let data_dir = dirs::data_dir().ok_or_else(no_home)?.join("outloop");
                let state_dir = dirs::state_dir()
                    .map(|d| d.join("outloop"))
                    .unwrap_or_else(|| data_dir.clone());
                Ok(Self {
                    config_dir,
                    data_dir,
                    state_dir,
                })
            }
        }
    }

    /// `config.toml` in the config dir.
    pub fn config_file(&self) -> PathBuf {
        self.config_dir.join("config.toml")
    }

    /// The embedded vault's encrypted file, `vault.age`, in the data dir.
    pub fn vault_file(&self) -> PathBuf {
        self.data_dir.join("vault.age")
    }

    /// The vault identity file, `vault-identity.txt`, in the config dir (used when no OS
    /// keystore answers, and always with `OUTLOOP_HOME`).
    pub fn identity_file(&self) -> PathBuf {
        self.config_dir.join("vault-identity.txt")
    }

    /// The audit log, `audit.jsonl`, in the state dir.
    pub fn audit_file(&self) -> PathBuf {
        self.state_dir.join("audit.jsonl")
    }
}

/// The non-public ranges `[egress] allow_private` may re-open (and nothing wider).
const RESTRICTED_NETS: &[&str] = &[
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.168.0.0/16",
    "198.18.0.0/15",
    "::1/128",
    "fc00::/7",
    "fe80::/10",
];

/// One `[backends.<name>]` table: its `kind` and the kind-specific settings, which the
/// backend itself validates.
#[derive(Debug, Clone, Deserialize)]
pub struct BackendConfig {
    /// The backend kind by config name: `vault`, `keychain`, `secret-service`,
    /// `onepassword`, `infisical`, `doppler`.
    pub kind: String,
    /// Every other key of the table.
    #[serde(flatten)]
    pub settings: BTreeMap<String, toml::Value>,
}

/// `[egress]`: where upstream connections may go.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EgressConfig {
    /// Loopback, private or link-local networks that upstreams may use, as CIDRs
    /// (e.g. `127.0.0.0/8`). Empty by default: all such addresses are refused.
    #[serde(default)]
    pub allow_private: Vec<IpNet>,
}

/// `[redaction]`: redactor settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedactionConfig {
    /// Secrets shorter than this many bytes are refused at load (default 8): a short value
    /// would blank out unrelated text.
    #[serde(default = "default_floor")]
    pub floor: usize,
}

fn default_floor() -> usize {
    DEFAULT_REDACTION_FLOOR
}

impl Default for RedactionConfig {
    fn default() -> Self {
        Self {
            floor: DEFAULT_REDACTION_FLOOR,
        }
    }
}

/// `[tenants.<name>]`: one client account.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    /// Directories bound to this tenant (`~` expands to the home dir). Stored canonical after
    /// loading when the directory exists.
    #[serde(default)]
    pub workspaces: Vec<PathBuf>,
    /// Credential name → this tenant's secret reference.
    #[serde(default)]
    pub credentials: BTreeMap<String, CredentialEntry>,
    /// Canaries: references to planted fake values (`canaries = ["vault://acme/canary"]`),
    /// resolved through the same backends as credentials. Outloop never sends them; every
    /// redactor the broker builds searches for the canaries of all tenants, redacts them like
    /// a secret (label `canary`) and records the tenant in the audit record's `canaries` and
    /// `alert` when one is seen.
    #[serde(default)]
    pub canaries: Vec<SecretRef>,
}

/// A tenant's entry for one credential: the reference, and optionally an account pin.
#[derive(Debug, Clone)]
pub struct CredentialEntry {
    /// Where the secret lives.
    pub reference: SecretRef,
    /// How to check which upstream account the secret belongs to.
    pub pin: Option<PinConfig>,
}

/// An account pin: an identity endpoint, a JSON pointer into its response and the expected
/// value.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PinConfig {
    /// The identity endpoint, called with the credential applied as for the action.
    pub url: String,
    /// An RFC 6901 JSON pointer into the endpoint's response.
    pub pointer: String,
    /// The value expected at the pointer (compared as text).
    pub expect: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CredentialLong {
    #[serde(rename = "ref")]
    reference: SecretRef,
    #[serde(default)]
    pin: Option<PinConfig>,
}

impl<'de> Deserialize<'de> for CredentialEntry {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = CredentialEntry;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a secret reference string or a table `{ ref = \"…\", pin = { … } }`")
            }
            fn visit_str<E: serde::de::Error>(
                self,
                s: &str,
            ) -> std::result::Result<Self::Value, E> {
                let reference = SecretRef::parse(s).map_err(|e| E::custom(e.message()))?;
                Ok(CredentialEntry {
                    reference,
                    pin: None,
                })
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> std::result::Result<Self::Value, A::Error> {
                let long =
                    CredentialLong::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                Ok(CredentialEntry {
                    reference: long.reference,
                    pin: long.pin,
                })
            }
        }
        d.deserialize_any(V)
    }
}

/// An HTTP method an action may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
#[allow(missing_docs)]
pub enum HttpMethod {
    Get,
    Head,
    Post,
    Put,
    Patch,
    Delete,
}

impl HttpMethod {
    /// The method name, upper-case.
    pub fn as_str(self) -> &'static str {
        match self {
            HttpMethod::Get => "GET",
            HttpMethod::Head => "HEAD",
            HttpMethod::Post => "POST",
            HttpMethod::Put => "PUT",
            HttpMethod::Patch => "PATCH",
            HttpMethod::Delete => "DELETE",
        }
    }

    /// Whether the method only reads (GET, HEAD).
    pub fn is_read_only(self) -> bool {
        matches!(self, HttpMethod::Get | HttpMethod::Head)
    }
}

/// How a credential is applied to an upstream request.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum AuthConfig {
    /// `Authorization: Bearer <secret>`.
    Bearer,
    /// A named header; `format` places the secret at `{secret}` (default `"{secret}"`).
    Header {
        /// The header name, e.g. `X-Api-Key`.
        name: String,
        /// The header value with `{secret}` where the secret goes.
        #[serde(default)]
        format: Option<String>,
    },
    /// HTTP basic auth with a fixed user name and the secret as the password.
    Basic {
        /// The user name.
        username: String,
    },
    /// A query parameter named `name` holding the secret.
    Query {
        /// The query parameter name, e.g. `api_key`.
        name: String,
    },
}

/// The type of an action parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
#[allow(missing_docs)]
pub enum ParamType {
    String,
    Integer,
    Boolean,
}

/// One declared action parameter.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParamSpec {
    /// `string`, `integer` or `boolean`.
    #[serde(rename = "type")]
    pub ty: ParamType,
    /// Shown in listings and tool schemas.
    #[serde(default)]
    pub description: Option<String>,
    /// Whether the caller must give it. Defaults to `true` unless a `default` is given.
    #[serde(default)]
    pub required: Option<bool>,
    /// The value used when the caller gives none.
    #[serde(default)]
    pub default: Option<serde_json::Value>,
    /// For strings: a regular expression the whole value must match.
    #[serde(default)]
    pub pattern: Option<String>,
    /// For strings: the allowed values.
    #[serde(default, rename = "enum")]
    pub values: Option<Vec<String>>,
    /// For integers: the smallest allowed value.
    #[serde(default)]
    pub min: Option<i64>,
    /// For integers: the largest allowed value.
    #[serde(default)]
    pub max: Option<i64>,
    /// For strings: the longest allowed value in characters (default 1024).
    #[serde(default)]
    pub max_length: Option<usize>,
}

impl ParamSpec {
    /// Whether the caller must give a value.
    pub fn is_required(&self) -> bool {
        self.required.unwrap_or(self.default.is_none())
    }
}

/// `[actions."<name>"]`: one HTTP action.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionConfig {
    /// One line for listings.
    #[serde(default)]
    pub description: Option<String>,
    /// The credential name the action applies (none for unauthenticated actions).
    #[serde(default)]
    pub credential: Option<String>,
    /// The HTTP method.
    pub method: HttpMethod,
    /// The pinned URL; `{param}` placeholders may appear only in the path.
    pub url: String,
    /// Query parameters: name → value template (`"{limit}"`, or literal text).
    #[serde(default)]
    pub query: BTreeMap<String, String>,
    /// Extra request headers: name → value template.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// A JSON body template: string leaves `"{param}"` take the typed parameter value.
    #[serde(default)]
    pub body: Option<serde_json::Value>,
    /// How the credential is applied (required when `credential` is set).
    #[serde(default)]
    pub auth: Option<AuthConfig>,
    /// Declared parameters.
    #[serde(default)]
    pub params: BTreeMap<String, ParamSpec>,
    /// Total timeout of one call, in seconds (default 30).
    #[serde(default)]
    pub timeout_secs: Option<u64>,
    /// The response size cap in bytes, after decompression (default 10 MiB).
    #[serde(default)]
    pub max_response_bytes: Option<u64>,
    /// Whether the action changes state upstream (creates, updates, sends, deletes). Default:
    /// `true` unless the method is GET or HEAD. Set `write = false` on a read that uses POST
    /// (a search endpoint), `write = true` on a GET that has side effects. Listings show it, and
    /// action packs suggest `[policy]` rules from it; see [`ActionConfig::is_write`].
    #[serde(default)]
    pub write: Option<bool>,
    /// Further credentials, each sent as the whole value of a named request header: header
    /// name → credential name, e.g. `{ "developer-token" = "googleads-developer-token" }` for
    /// Google Ads, which wants a developer token beside the OAuth bearer token
    /// (<https://developers.google.com/google-ads/api/rest/auth>). Each is resolved for the
    /// tenant like `credential`, applied at the last moment and redacted from the response.
    #[serde(default)]
    pub credential_headers: BTreeMap<String, String>,
    /// A form body (`application/x-www-form-urlencoded`) instead of a JSON `body`: field name
    /// → value template, as Stripe takes writes (<https://docs.stripe.com/api#intro>). Field
    /// names are literal (`metadata[order]` works); a field whose placeholders all lack a value
    /// is left out. Not with `body`, and not on GET or HEAD.
    #[serde(default)]
    pub form: BTreeMap<String, String>,
}

impl ActionConfig {
    /// Whether the action changes state upstream: `write` when set, else `true` for every
    /// method but GET and HEAD.
    pub fn is_write(&self) -> bool {
        self.write.unwrap_or(!self.method.is_read_only())
    }

    /// Every credential name the action applies: `credential` first, then the values of
    /// `credential_headers` in header-name order, each once.
    pub fn credential_names(&self) -> Vec<String> {
        let mut out: Vec<String> = self.credential.iter().cloned().collect();
        for c in self.credential_headers.values() {
            if !out.contains(c) {
                out.push(c.clone());
            }
        }
        out
    }
}

/// `[aliases.<name>]`: a pinned upstream reached through the proxy or the MCP `request` tool.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AliasConfig {
    /// One line for listings.
    #[serde(default)]
    pub description: Option<String>,
    /// The credential name applied.
    #[serde(default)]
    pub credential: Option<String>,
    /// The pinned scheme, host and base path.
    pub base_url: String,
    /// How the credential is applied.
    #[serde(default)]
    pub auth: Option<AuthConfig>,
    /// Allowed `METHOD /path/glob` rules, e.g. `GET /crm/v3/**`.
    #[serde(default)]
    pub allow: Vec<String>,
}

/// The default decision when no rule matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DefaultDecision {
    /// Deny what no rule allows (the default).
    #[default]
    Deny,
    /// Allow what no rule denies.
    Allow,
}

/// `[policy]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// The decision when no rule matches (default `deny`).
    #[serde(default)]
    pub default: DefaultDecision,
    /// Per-tenant rules.
    #[serde(default)]
    pub tenants: BTreeMap<String, TenantPolicy>,
}

/// `[policy.tenants.<name>]`: glob lists over action names and `alias:<name>`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantPolicy {
    /// Allowed actions.
    #[serde(default)]
    pub allow: Vec<String>,
    /// Denied actions; deny wins over allow and approve.
    #[serde(default)]
    pub deny: Vec<String>,
    /// Actions held for a human's approval.
    #[serde(default)]
    pub approve: Vec<String>,
    /// Rate limits and budgets per action glob: `"20/minute"`, `"20/hour"`, `"500/day"`.
    /// Counted per tenant and glob, persisted in the state dir so they survive a restart.
    #[serde(default)]
    pub rate: BTreeMap<String, String>,
    /// Only read-only methods (GET, HEAD) are allowed for this tenant.
    #[serde(default)]
    pub read_only: bool,
    /// Time windows (UTC) when requests are allowed, e.g. `["mon-fri 08:00-18:00"]`; empty
    /// means always. Day lists: `*`, `mon`, `mon-fri`, `sat,sun`.
    #[serde(default)]
    pub windows: Vec<String>,
    /// The largest response body this tenant may receive, in bytes (after decoding).
    #[serde(default)]
    pub max_response_bytes: Option<u64>,
    /// Per-action parameter constraints, tighter than the action's own: action name →
    /// parameter → constraint.
    #[serde(default)]
    pub params: BTreeMap<String, BTreeMap<String, ParamConstraint>>,
    /// How long a request held for approval waits for a human, in seconds (default 300).
    #[serde(default)]
    pub approval_timeout_secs: Option<u64>,
}

/// A tenant's constraint on one action parameter (all given parts must hold).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParamConstraint {
    /// The allowed values (compared as text).
    #[serde(default, rename = "enum")]
    pub values: Option<Vec<String>>,
    /// A regular expression the whole value (as text) must match.
    #[serde(default)]
    pub pattern: Option<String>,
    /// The smallest allowed integer.
    #[serde(default)]
    pub min: Option<i64>,
    /// The largest allowed integer.
    #[serde(default)]
    pub max: Option<i64>,
    /// The longest allowed value, in characters.
    #[serde(default)]
    pub max_length: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    include: Vec<String>,
    #[serde(default)]
    backends: BTreeMap<String, BackendConfig>,
    #[serde(default)]
    egress: EgressConfig,
    #[serde(default)]
    redaction: RedactionConfig,
    #[serde(default)]
    tenants: BTreeMap<String, TenantConfig>,
    #[serde(default)]
    actions: BTreeMap<String, ActionConfig>,
    #[serde(default)]
    aliases: BTreeMap<String, AliasConfig>,
    #[serde(default)]
    policy: PolicyConfig,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PackFile {
    #[serde(default)]
    actions: BTreeMap<String, ActionConfig>,
    #[serde(default)]
    aliases: BTreeMap<String, AliasConfig>,
}

/// One action pack, parsed and validated on its own, without a host config or tenants: what
/// `outloop actions --pack <file>` checks. The same parser and per-action checks as
/// [`HostConfig::load`] run, so a pack that loads here loads through `include` too (unless
/// its names clash with another file's).
#[derive(Debug, Clone)]
pub struct Pack {
    /// The pack file.
    pub file: PathBuf,
    /// `[actions."<name>"]` by name.
    pub actions: BTreeMap<String, ActionConfig>,
    /// `[aliases.<name>]` by name.
    pub aliases: BTreeMap<String, AliasConfig>,
}

impl Pack {
    /// Reads and validates the pack at `file`: only `[actions.*]` and `[aliases.*]` tables,
    /// valid names, URLs pinned with placeholders only in the path, declared parameters, and
    /// valid auth and header settings.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Config`] with one line `file:line: key: problem` when the file cannot be
    /// read, is not TOML, has an unknown key, or an action or alias is invalid.
    ///
    /// [`ErrorKind::Config`]: crate::ErrorKind::Config
    pub fn load(file: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(file).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::config(format!("{}: no such action pack", file.display()))
            } else {
                Error::io("cannot read", file, e).context("action pack")
            }
        })?;
        Self::from_str_at(file, &text)
    }

    /// Parses and validates pack `text` as if read from `file`.
    ///
    /// # Errors
    ///
    /// As for [`Pack::load`].
    pub fn from_str_at(file: &Path, text: &str) -> Result<Self> {
        let parsed: PackFile = parse_toml(file, text)?;
        for (name, action) in &parsed.actions {
            let path = format!("actions.{}", key(name));
            if !valid_name(name) {
                return Err(located(
                    file,
                    text,
                    &path,
                    None,
                    "action names use letters, digits, `-`, `_` and `.`",
                ));
            }
            validate_action(action).map_err(|(sub, msg)| {
                let p = if sub.is_empty() {
                    path.clone()
                } else {
                    format!("{path}.{sub}")
                };
                located(file, text, &p, None, &msg)
            })?;
        }
        for (name, alias) in &parsed.aliases {
            let path = format!("aliases.{}", key(name));
            validate_alias(alias)
                .map_err(|(sub, msg)| located(file, text, &format!("{path}.{sub}"), None, &msg))?;
        }
        Ok(Self {
            file: file.to_path_buf(),
            actions: parsed.actions,
            aliases: parsed.aliases,
        })
    }
}

/// The loaded, validated host config.
#[derive(Debug, Clone)]
pub struct HostConfig {
    /// Where the files live.
    pub paths: Paths,
    /// The config file this was loaded from.
    pub file: PathBuf,
    /// `[backends.*]` by instance name. A `vault` backend is always present.
    pub backends: BTreeMap<String, BackendConfig>,
    /// `[egress]`.
    pub egress: EgressConfig,
    /// `[redaction]`.
    pub redaction: RedactionConfig,
    /// `[tenants.*]` by name, workspaces canonicalized.
    pub tenants: BTreeMap<String, TenantConfig>,
    /// Every action, from the config file and its includes.
    pub actions: BTreeMap<String, ActionConfig>,
    /// Every alias, from the config file and its includes.
    pub aliases: BTreeMap<String, AliasConfig>,
    /// `[policy]`.
    pub policy: PolicyConfig,
    /// For each action and alias (`alias:<name>`), the file that defined it.
    pub sources: BTreeMap<String, PathBuf>,
}

/// Turns a TOML or serde error into one line: `file:line: key.path: message`.
fn located(
    file: &Path,
    text: &str,
    path: &str,
    span: Option<std::ops::Range<usize>>,
    msg: &str,
) -> Error {
    let line = span
        .map(|s| line_of_offset(text, s.start))
        .or_else(|| line_of_key(text, path));
    let key = if path.is_empty() || path == "." {
        String::new()
    } else {
        format!(" {path}:")
    };
    let msg = msg.trim().trim_end_matches('.').replace('\n', " ");
    match line {
        Some(l) => Error::config(format!("{}:{l}:{key} {msg}", file.display())),
        None => Error::config(format!("{}:{key} {msg}", file.display())),
    }
}

fn line_of_offset(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// Finds the line where a dotted key path is defined, for errors found after parsing.
fn line_of_key(text: &str, path: &str) -> Option<usize> {
    let doc = toml_edit::ImDocument::parse(text).ok()?;
    let mut item: &toml_edit::Item = doc.as_item();
    let mut best = None;
    for seg in split_key_path(path) {
        let Some((key, child)) = item.as_table_like().and_then(|t| t.get_key_value(&seg)) else {
            break;
        };
        if let Some(span) = key.span().or_else(|| child.span()) {
            best = Some(line_of_offset(text, span.start));
        }
        item = child;
    }
    best
}

/// Splits `a."b.c".d` into `["a", "b.c", "d"]`.
fn split_key_path(path: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    // An array index (`canaries[1]`) locates the array's key: the index is skipped.
    let mut index = false;
    for c in path.chars() {
        match c {
            '"' => quoted = !quoted,
            '[' if !quoted => index = true,
            ']' if !quoted && index => index = false,
            _ if index => {}
            '.' if !quoted => out.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Quotes a key for a dotted path when it contains characters that need it.
fn key(name: &str) -> String {
    if name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        name.to_owned()
    } else {
        format!("\"{name}\"")
    }
}

fn parse_toml<T: serde::de::DeserializeOwned>(file: &Path, text: &str) -> Result<T> {
    let de = toml::Deserializer::new(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        located(file, text, &path, inner.span(), inner.message())
    })
}

fn read(file: &Path) -> Result<String> {
    std::fs::read_to_string(file).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::config(format!(
                "{}: no config file; run `outloop init` to create one",
                file.display()
            ))
        } else {
            Error::io("cannot read", file, e).context("config")
        }
    })
}

/// Expands a leading `~` and makes the path absolute and lexically normal; then resolves
/// symlinks when the path exists.
pub fn normalize_dir(p: &Path) -> Result<PathBuf> {
    let expanded = if let Ok(rest) = p.strip_prefix("~") {
        dirs::home_dir()
            .ok_or_else(|| Error::config("cannot expand `~`: no home directory"))?
            .join(rest)
    } else {
        p.to_path_buf()
    };
    let abs = if expanded.is_absolute() {
        expanded
    } else {
        std::env::current_dir()
            .map_err(|e| Error::io("cannot read", Path::new("."), e))?
            .join(expanded)
    };
    if let Ok(c) = std::fs::canonicalize(&abs) {
        return Ok(c);
    }
    let mut out = PathBuf::new();
    for c in abs.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    Ok(out)
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

impl HostConfig {
    /// Loads the config at `paths.config_file()` with its includes, and validates it.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Config`] with `file:line: key: problem` when the file is missing or
    /// malformed, a key is unknown, a value is out of range, an include matches a bad pack,
    /// or the config is inconsistent (an unknown tenant in policy, a workspace bound twice,
    /// a placeholder outside the URL path, …).
    ///
    /// [`ErrorKind::Config`]: crate::ErrorKind::Config
    pub fn load(paths: &Paths) -> Result<Self> {
        let file = paths.config_file();
        let text = read(&file)?;
        Self::from_str_at(paths, &file, &text)
    }

    /// Parses and validates config `text` as if read from `file` (includes are resolved
    /// relative to `file`'s directory).
    ///
    /// # Errors
    ///
    /// As for [`HostConfig::load`].
    pub fn from_str_at(paths: &Paths, file: &Path, text: &str) -> Result<Self> {
        let raw: RawConfig = parse_toml(file, text)?;
        let mut sources = BTreeMap::new();
        for name in raw.actions.keys() {
            sources.insert(name.clone(), file.to_path_buf());
        }
        for name in raw.aliases.keys() {
            sources.insert(format!("alias:{name}"), file.to_path_buf());
        }
        let mut cfg = HostConfig {
            paths: paths.clone(),
            file: file.to_path_buf(),
            backends: raw.backends,
            egress: raw.egress,
            redaction: raw.redaction,
            tenants: raw.tenants,
            actions: raw.actions,
            aliases: raw.aliases,
            policy: raw.policy,
            sources,
        };
        let base = file.parent().unwrap_or(Path::new("."));
        for (i, pattern) in raw.include.iter().enumerate() {
            let at = |msg: String| located(file, text, &format!("include.{i}"), None, &msg);
            let full = if Path::new(pattern).is_absolute() {
                PathBuf::from(pattern)
            } else {
                base.join(pattern)
            };
            let entries = glob::glob(&full.to_string_lossy())
                .map_err(|e| at(format!("bad include pattern `{pattern}`: {}", e.msg)))?;
            let mut files: Vec<PathBuf> = entries.filter_map(|e| e.ok()).collect();
            files.sort();
            for pack in files {
                cfg.merge_pack(&pack)?;
            }
        }
        if !cfg.backends.values().any(|b| b.kind == "vault") && !cfg.backends.contains_key("vault")
        {
            cfg.backends.insert(
                "vault".into(),
                BackendConfig {
                    kind: "vault".into(),
                    settings: BTreeMap::new(),
                },
            );
        }
        cfg.validate(file, text)?;
        Ok(cfg)
    }

    fn merge_pack(&mut self, pack: &Path) -> Result<()> {
        let text = read(pack)?;
        let parsed: PackFile = parse_toml(pack, &text)?;
        for (name, action) in parsed.actions {
            if let Some(first) = self.sources.get(&name) {
                return Err(located(
                    pack,
                    &text,
                    &format!("actions.{}", key(&name)),
                    None,
                    &format!("action `{name}` is already defined in {}", first.display()),
                ));
            }
            self.sources.insert(name.clone(), pack.to_path_buf());
            self.actions.insert(name, action);
        }
        for (name, alias) in parsed.aliases {
            let id = format!("alias:{name}");
            if let Some(first) = self.sources.get(&id) {
                return Err(located(
                    pack,
                    &text,
                    &format!("aliases.{}", key(&name)),
                    None,
                    &format!("alias `{name}` is already defined in {}", first.display()),
                ));
            }
            self.sources.insert(id, pack.to_path_buf());
            self.aliases.insert(name, alias);
        }
        Ok(())
    }

    fn validate(&mut self, file: &Path, text: &str) -> Result<()> {
        // Errors in included packs point at the pack; the rest at the main file.
        let err = |cfg: &HostConfig, source_key: Option<&str>, path: String, msg: String| {
            let src = source_key.and_then(|k| cfg.sources.get(k)).cloned();
            match src {
                Some(p) if p != file => {
                    let t = std::fs::read_to_string(&p).unwrap_or_default();
                    located(&p, &t, &path, None, &msg)
                }
                _ => located(file, text, &path, None, &msg),
            }
        };

        for (i, net) in self.egress.allow_private.iter().enumerate() {
            if !RESTRICTED_NETS
                .iter()
                .any(|r| r.parse::<IpNet>().is_ok_and(|r| r.contains(net)))
            {
                return Err(err(
                    self,
                    None,
                    format!("egress.allow_private[{i}]"),
                    format!(
                        "`{net}` is not inside a loopback, private, link-local or other non-public range; allow_private only re-opens such ranges"
                    ),
                ));
            }
        }
        if self.redaction.floor == 0 {
            return Err(err(
                self,
                None,
                "redaction.floor".into(),
                "must be at least 1".into(),
            ));
        }

        for (name, b) in &self.backends {
            if BackendKind::from_config_name(&b.kind).is_none() {
                return Err(err(
                    self,
                    None,
                    format!("backends.{}.kind", key(name)),
                    format!(
                        "unknown backend kind `{}` (expected vault, keychain, secret-service, onepassword, infisical or doppler)",
                        b.kind
                    ),
                ));
            }
        }
        let kinds: Vec<BackendKind> = self
            .backends
            .values()
            .filter_map(|b| BackendKind::from_config_name(&b.kind))
            .collect();

        // Tenants: names, workspaces (canonical, bound once), credential backends configured.
        let mut bound: BTreeMap<PathBuf, String> = BTreeMap::new();
        let tenant_names: Vec<String> = self.tenants.keys().cloned().collect();
        for name in &tenant_names {
            if !valid_name(name) {
                return Err(err(
                    self,
                    None,
                    format!("tenants.{}", key(name)),
                    "tenant names use letters, digits, `-`, `_` and `.`".into(),
                ));
            }
            let tenant = &self.tenants[name];
            let mut canon = Vec::new();
            for (i, w) in tenant.workspaces.iter().enumerate() {
                if !(w.is_absolute() || w.starts_with("~")) {
                    return Err(err(
                        self,
                        None,
                        format!("tenants.{}.workspaces[{i}]", key(name)),
                        format!(
                            "`{}` is not an absolute path (or `~/…`); a relative workspace would depend on where outloop runs",
                            w.display()
                        ),
                    ));
                }
                let p = normalize_dir(w).map_err(|e| {
                    err(
                        self,
                        None,
                        format!("tenants.{}.workspaces.{i}", key(name)),
                        e.message().to_owned(),
                    )
                })?;
                if let Some(other) = bound.get(&p) {
                    return Err(err(
                        self,
                        None,
                        format!("tenants.{}.workspaces", key(name)),
                        format!("`{}` is already bound to tenant `{other}`", p.display()),
                    ));
                }
                bound.insert(p.clone(), name.clone());
                canon.push(p);
            }
            for (cred, entry) in &tenant.credentials {
                let k = entry.reference.kind();
                if !kinds.contains(&k) {
                    return Err(err(
                        self,
                        None,
                        format!("tenants.{}.credentials.{}", key(name), key(cred)),
                        format!(
                            "reference `{}` needs a `[backends.*]` table with kind = \"{}\"",
                            entry.reference,
                            k.config_name()
                        ),
                    ));
                }
            }
            for (i, reference) in tenant.canaries.iter().enumerate() {
                let k = reference.kind();
                if !kinds.contains(&k) {
                    return Err(err(
                        self,
                        None,
                        format!("tenants.{}.canaries[{i}]", key(name)),
                        format!(
                            "reference `{reference}` needs a `[backends.*]` table with kind = \"{}\"",
                            k.config_name()
                        ),
                    ));
                }
            }
            if let Some(t) = self.tenants.get_mut(name) {
                t.workspaces = canon;
            }
        }

        // Neither the config nor an included pack may live inside a bound workspace: the agent
        // could edit it and grant itself anything.
        let config_dir = normalize_dir(&self.paths.config_dir)?;
        for (ws, tenant) in &bound {
            if config_dir.starts_with(ws) {
                return Err(Error::config(format!(
                    "{}: the config dir is inside workspace `{}` of tenant `{tenant}`; move OUTLOOP_HOME outside every workspace",
                    file.display(),
                    ws.display()
                )));
            }
            for source in self.sources.values() {
                let real = std::fs::canonicalize(source).unwrap_or_else(|_| source.clone());
                if real.starts_with(ws) {
                    return Err(Error::config(format!(
                        "{}: included file `{}` lies inside workspace `{}` of tenant `{tenant}`; action packs must live outside every workspace",
                        file.display(),
                        source.display(),
                        ws.display()
                    )));
                }
            }
        }

        for (name, action) in &self.actions {
            let path = format!("actions.{}", key(name));
            if !valid_name(name) {
                return Err(err(
                    self,
                    Some(name),
                    path,
                    "action names use letters, digits, `-`, `_` and `.`".into(),
                ));
            }
            validate_action(action).map_err(|(sub, msg)| {
                let p = if sub.is_empty() {
                    path.clone()
                } else {
                    format!("{path}.{sub}")
                };
                err(self, Some(name), p, msg)
            })?;
        }
        for (name, alias) in &self.aliases {
            let id = format!("alias:{name}");
            let path = format!("aliases.{}", key(name));
            validate_alias(alias)
                .map_err(|(sub, msg)| err(self, Some(&id), format!("{path}.{sub}"), msg))?;
        }

        for (tenant, rules) in &self.policy.tenants {
            let path = format!("policy.tenants.{}", key(tenant));
            if !self.tenants.contains_key(tenant) {
                return Err(err(
                    self,
                    None,
                    path,
                    format!("no tenant `{tenant}` in [tenants]"),
                ));
            }
            for (list, globs) in [
                ("allow", &rules.allow),
                ("deny", &rules.deny),
                ("approve", &rules.approve),
            ] {
                for (i, g) in globs.iter().enumerate() {
                    if g.is_empty() || g.chars().any(|c| c.is_whitespace() || c.is_control()) {
                        return Err(err(
                            self,
                            None,
                            format!("{path}.{list}.{i}"),
                            format!("bad pattern `{g}`"),
                        ));
                    }
                }
            }
            for (glob, spec) in &rules.rate {
                crate::policy::RateSpec::parse(spec)
                    .map_err(|why| err(self, None, format!("{path}.rate.{}", key(glob)), why))?;
            }
            for (i, w) in rules.windows.iter().enumerate() {
                crate::policy::Window::parse(w)
                    .map_err(|why| err(self, None, format!("{path}.windows.{i}"), why))?;
            }
            if rules.max_response_bytes == Some(0) {
                return Err(err(
                    self,
                    None,
                    format!("{path}.max_response_bytes"),
                    "must be at least 1".into(),
                ));
            }
            for (action, params) in &rules.params {
                let Some(a) = self.actions.get(action) else {
                    return Err(err(
                        self,
                        None,
                        format!("{path}.params.{}", key(action)),
                        format!("no action `{action}`"),
                    ));
                };
                for (param, c) in params {
                    let at = format!("{path}.params.{}.{}", key(action), key(param));
                    if !a.params.contains_key(param) {
                        return Err(err(
                            self,
                            None,
                            at,
                            format!("action `{action}` has no parameter `{param}`"),
                        ));
                    }
                    if let Some(p) = &c.pattern {
                        regex::Regex::new(p).map_err(|_| {
                            err(
                                self,
                                None,
                                format!("{at}.pattern"),
                                "bad regular expression".into(),
                            )
                        })?;
                    }
                }
            }
        }
        Ok(())
    }

    /// The names of the tenant's credentials.
    pub fn tenant(&self, name: &str) -> Option<&TenantConfig> {
        self.tenants.get(name)
    }
}

/// Placeholders `{name}` in a template, in order.
pub fn placeholders(template: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        let after = &rest[start + 1..];
        match after.find('}') {
            Some(end) => {
                out.push(&after[..end]);
                rest = &after[end + 1..];
            }
            None => break,
        }
    }
    out
}

/// Headers that frame or route the request; neither an action nor a credential may set them.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "upgrade",
    "te",
    "trailer",
    "keep-alive",
    "proxy-connection",
    "expect",
];

fn validate_auth(auth: &AuthConfig) -> std::result::Result<(), (String, String)> {
    match auth {
        AuthConfig::Header { name, format } => {
            if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
                return Err((
                    "auth.name".into(),
                    format!("`{name}` is not a valid header name"),
                ));
            }
            if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
                return Err((
                    "auth.name".into(),
                    format!("`{name}` frames or routes the request and may not carry a credential"),
                ));
            }
            if format.as_ref().is_some_and(|f| !f.contains("{secret}")) {
                return Err(("auth.format".into(), "must contain `{secret}`".into()));
            }
        }
        AuthConfig::Query { name } if name.is_empty() => {
            return Err(("auth.name".into(), "must not be empty".into()));
        }
        AuthConfig::Basic { username } if username.contains(':') => {
            return Err(("auth.username".into(), "must not contain `:`".into()));
        }
        _ => {}
    }
    Ok(())
}

fn validate_base(url: &str, field: &str) -> std::result::Result<url::Url, (String, String)> {
    let u = url::Url::parse(url)
        .map_err(|e| (field.to_owned(), format!("`{url}` is not a URL: {e}")))?;
    if !matches!(u.scheme(), "http" | "https") {
        return Err((
            field.to_owned(),
            format!("scheme `{}` is not http or https", u.scheme()),
        ));
    }
    if u.host_str().is_none() {
        return Err((field.to_owned(), "has no host".into()));
    }
    if !u.username().is_empty() || u.password().is_some() {
        return Err((
            field.to_owned(),
            "must not carry user info; use `auth`".into(),
        ));
    }
    if u.fragment().is_some() {
        return Err((field.to_owned(), "must not have a fragment".into()));
    }
    Ok(u)
}

fn validate_action(a: &ActionConfig) -> std::result::Result<(), (String, String)> {
    // Placeholders may appear only in the path: the part after scheme://authority.
    let after_scheme = a.url.split_once("://").map(|(_, r)| r).unwrap_or("");
    let authority_end = after_scheme.find(['/', '?']).unwrap_or(after_scheme.len());
    let authority = &after_scheme[..authority_end];
    let rest = &after_scheme[authority_end..];
    if authority.contains(['{', '}']) {
        return Err((
            "url".into(),
            "placeholders may appear only in the URL path, never in the scheme, host or port"
                .into(),
        ));
    }
    if rest.contains('?') {
        return Err((
            "url".into(),
            "put query parameters in `query`, not in `url`".into(),
        ));
    }
    let probe = a.url.replace(['{', '}'], "");
    validate_base(&probe, "url")?;

    let mut used: Vec<String> = Vec::new();
    used.extend(placeholders(rest).into_iter().map(str::to_owned));
    for v in a
        .query
        .values()
        .chain(a.headers.values())
        .chain(a.form.values())
    {
        used.extend(placeholders(v).into_iter().map(str::to_owned));
    }
    if let Some(body) = &a.body {
        collect_body_placeholders(body, &mut used);
    }
    for p in &used {
        if !a.params.contains_key(p) {
            return Err((
                "".into(),
                format!("placeholder `{{{p}}}` has no declared parameter in `params`"),
            ));
        }
    }
    for h in a.headers.keys() {
        if reqwest::header::HeaderName::from_bytes(h.as_bytes()).is_err() {
            return Err((
                format!("headers.{}", key(h)),
                "is not a valid header name".into(),
            ));
        }
        let lower = h.to_ascii_lowercase();
        if RESERVED_HEADERS.contains(&lower.as_str())
            || matches!(
                lower.as_str(),
                "authorization" | "cookie" | "proxy-authorization"
            )
        {
            return Err((
                format!("headers.{}", key(h)),
                "may not be set by an action".into(),
            ));
        }
    }
    if !a.form.is_empty() {
        if a.body.is_some() {
            return Err((
                "form".into(),
                "use either `body` (JSON) or `form`, not both".into(),
            ));
        }
        if a.method.is_read_only() {
            return Err((
                "form".into(),
                format!("a {} request has no body", a.method.as_str()),
            ));
        }
    }
    for (h, cred) in &a.credential_headers {
        let at = format!("credential_headers.{}", key(h));
        if reqwest::header::HeaderName::from_bytes(h.as_bytes()).is_err() {
            return Err((at, "is not a valid header name".into()));
        }
        let lower = h.to_ascii_lowercase();
        if RESERVED_HEADERS.contains(&lower.as_str())
            || matches!(
                lower.as_str(),
                "authorization" | "cookie" | "proxy-authorization"
            )
        {
            return Err((
                at,
                "frames, routes or authorizes the request and may not carry a credential here; use `auth`".into(),
            ));
        }
        if a.headers.keys().any(|k| k.eq_ignore_ascii_case(h)) {
            return Err((at, "is also set in `headers`; set it in one place".into()));
        }
        if let Some(AuthConfig::Header { name, .. }) = &a.auth
            && name.eq_ignore_ascii_case(h)
        {
            return Err((at, "is also the `auth` header; set it in one place".into()));
        }
        if !valid_name(cred) {
            return Err((
                at,
                "credential names use letters, digits, `-`, `_` and `.`".into(),
            ));
        }
    }
    if a.body.is_some() && matches!(a.method, HttpMethod::Get | HttpMethod::Head) {
        return Err((
            "body".into(),
            format!("a {} request has no body", a.method.as_str()),
        ));
    }
    match (&a.credential, &a.auth) {
        (Some(_), None) => return Err(("auth".into(), "required when `credential` is set".into())),
        (None, Some(_)) => return Err(("credential".into(), "required when `auth` is set".into())),
        (Some(c), Some(auth)) => {
            if !valid_name(c) {
                return Err((
                    "credential".into(),
                    "credential names use letters, digits, `-`, `_` and `.`".into(),
                ));
            }
            validate_auth(auth)?;
        }
        (None, None) => {}
    }
    if a.timeout_secs == Some(0) {
        return Err(("timeout_secs".into(), "must be at least 1".into()));
    }
    if a.max_response_bytes == Some(0) {
        return Err(("max_response_bytes".into(), "must be at least 1".into()));
    }
    for (name, p) in &a.params {
        let at = |field: &str| format!("params.{}.{field}", key(name));
        if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err((
                format!("params.{}", key(name)),
                "parameter names use letters, digits and `_`".into(),
            ));
        }
        if let Some(pat) = &p.pattern {
            if p.ty != ParamType::String {
                return Err((
                    at("pattern"),
                    "only string parameters take a pattern".into(),
                ));
            }
            regex::Regex::new(pat).map_err(|e| {
                (
                    at("pattern"),
                    format!(
                        "bad regular expression: {}",
                        e.to_string().lines().last().unwrap_or("")
                    ),
                )
            })?;
        }
        if p.values.is_some() && p.ty != ParamType::String {
            return Err((at("enum"), "only string parameters take an enum".into()));
        }
        if (p.min.is_some() || p.max.is_some()) && p.ty != ParamType::Integer {
            return Err((at("min"), "only integer parameters take min and max".into()));
        }
        if let (Some(lo), Some(hi)) = (p.min, p.max)
            && lo > hi
        {
            return Err((at("min"), format!("min {lo} is greater than max {hi}")));
        }
        if let Some(d) = &p.default {
            let ok = match p.ty {
                ParamType::String => d.is_string(),
                ParamType::Integer => d.is_i64(),
                ParamType::Boolean => d.is_boolean(),
            };
            if !ok {
                return Err((
                    at("default"),
                    format!("does not match the parameter type {:?}", p.ty).to_lowercase(),
                ));
            }
        }
    }
    Ok(())
}

fn collect_body_placeholders(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::String(s) => out.extend(placeholders(s).into_iter().map(str::to_owned)),
        serde_json::Value::Array(a) => a.iter().for_each(|x| collect_body_placeholders(x, out)),
        serde_json::Value::Object(o) => o.values().for_each(|x| collect_body_placeholders(x, out)),
        _ => {}
    }
}

fn validate_alias(a: &AliasConfig) -> std::result::Result<(), (String, String)> {
    validate_base(&a.base_url, "base_url")?;
    match (&a.credential, &a.auth) {
        (Some(_), None) => return Err(("auth".into(), "required when `credential` is set".into())),
        (None, Some(_)) => return Err(("credential".into(), "required when `auth` is set".into())),
        (Some(_), Some(auth)) => validate_auth(auth)?,
        (None, None) => {}
    }
    for (i, rule) in a.allow.iter().enumerate() {
        let ok = rule.split_once(' ').is_some_and(|(m, p)| {
            (m == "*" || matches!(m, "GET" | "HEAD" | "POST" | "PUT" | "PATCH" | "DELETE"))
                && p.starts_with('/')
        });
        if !ok {
            return Err((
                format!("allow.{i}"),
                format!("`{rule}` is not `METHOD /path/glob`"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod pack_tests;
#[cfg(test)]
mod tests;
