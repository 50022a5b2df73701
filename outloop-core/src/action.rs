//! The [`Action`] trait, typed parameters, and the response an action yields.

use std::collections::BTreeMap;
use std::fmt;
use std::pin::Pin;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::Stream;

use crate::error::Result;
use crate::secret::SecretValue;

/// Parameters as a caller gives them: name → JSON value. The CLI passes every `-p key=value`
/// as a JSON string; typed callers (FFI, MCP) may pass numbers and booleans directly.
pub type RawParams = BTreeMap<String, serde_json::Value>;

/// One validated parameter value.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ParamValue {
    /// A string that passed the declared pattern, enum and length checks.
    String(String),
    /// An integer that passed the declared range check.
    Integer(i64),
    /// A boolean.
    Boolean(bool),
}

impl ParamValue {
    /// The value as JSON (a string, a number or a boolean).
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            ParamValue::String(s) => serde_json::Value::String(s.clone()),
            ParamValue::Integer(i) => serde_json::Value::from(*i),
            ParamValue::Boolean(b) => serde_json::Value::Bool(*b),
        }
    }
}

impl fmt::Display for ParamValue {
    /// The text form used in URLs and headers: strings as-is, integers in decimal,
    /// booleans as `true`/`false`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParamValue::String(s) => f.write_str(s),
            ParamValue::Integer(i) => write!(f, "{i}"),
            ParamValue::Boolean(b) => write!(f, "{b}"),
        }
    }
}

/// Validated parameters in canonical form: every declared parameter that has a value
/// (given or defaulted), sorted by name. Two requests with equal `Params` are the same request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Params(pub BTreeMap<String, ParamValue>);

impl Params {
    /// The value of `name`, if present.
    pub fn get(&self, name: &str) -> Option<&ParamValue> {
        self.0.get(name)
    }

    /// The canonical JSON object of the parameters.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::Value::Object(
            self.0
                .iter()
                .map(|(k, v)| (k.clone(), v.to_json()))
                .collect(),
        )
    }
}

/// The credentials resolved for one request: credential name → secret value, for the
/// request's tenant only.
#[derive(Debug, Default)]
pub struct Credentials(BTreeMap<String, SecretValue>);

impl Credentials {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the value for credential `name`.
    pub fn insert(&mut self, name: impl Into<String>, value: SecretValue) {
        self.0.insert(name.into(), value);
    }

    /// The value for credential `name`.
    pub fn get(&self, name: &str) -> Option<&SecretValue> {
        self.0.get(name)
    }

    /// Every (name, value) pair, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &SecretValue)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v))
    }
}

/// A response body as a stream of byte chunks.
pub type BodyStream = Pin<Box<dyn Stream<Item = Result<Bytes>> + Send>>;

/// What an action yields before redaction: status, headers and a body stream.
pub struct ActionResponse {
    /// The upstream's HTTP status code (for exec actions, the exit code mapped by the action).
    pub status: u16,
    /// The status text (reason phrase); may be empty.
    pub status_text: String,
    /// Response headers in the order received; names lower-case, values as raw bytes.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The body, streamed. Already decompressed; bounded by the action's size cap.
    pub body: BodyStream,
}

impl fmt::Debug for ActionResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ActionResponse")
            .field("status", &self.status)
            .field("headers", &self.headers.len())
            .finish_non_exhaustive()
    }
}

/// A named, approved operation: pinned target, typed parameters, and how the credential is
/// applied.
///
/// The broker calls [`Action::validate`] and [`Action::credentials`] before policy and before
/// any backend is touched, then [`Action::execute`] with the resolved credentials.
#[async_trait]
pub trait Action: Send + Sync {
    /// The action's name, e.g. `"hubspot.contacts.list"`.
    fn name(&self) -> &str;

    /// A one-line description for listings and tool descriptions.
    fn description(&self) -> &str;

    /// The HTTP method the action uses, upper-case (policy's read-only switch reads it).
    fn method(&self) -> &str;

    /// The credential names this action needs (may be empty).
    fn credentials(&self) -> Vec<String>;

    /// The JSON Schema of the parameters (an object schema), for listings and MCP tools.
    fn params_schema(&self) -> serde_json::Value;

    /// Checks `raw` against the declared parameters and returns them in canonical form.
    ///
    /// # Errors
    ///
    /// [`crate::ErrorKind::InvalidParameter`] naming the parameter when one is unknown,
    /// missing, of the wrong type, out of range, or fails its pattern or enum.
    fn validate(&self, raw: &RawParams) -> Result<Params>;

    /// Performs the action with `params` (from [`Action::validate`]) and `credentials`
    /// (exactly those named by [`Action::credentials`], for the request's tenant).
    ///
    /// # Errors
    ///
    /// [`crate::ErrorKind::SafetyRefused`] when an egress, size or encoding check refuses;
    /// [`crate::ErrorKind::UpstreamUnreachable`] or [`crate::ErrorKind::Timeout`] when the
    /// upstream cannot be reached in time; [`crate::ErrorKind::InvalidParameter`] when a value
    /// cannot be placed safely. Messages never contain a credential.
    async fn execute(&self, params: &Params, credentials: &Credentials) -> Result<ActionResponse>;
}
