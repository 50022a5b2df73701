//! Templates with `{param}` placeholders, and building the request URL, query, headers and
//! JSON body from validated parameters.
//!
//! Parameters fill only declared slots: a path placeholder's value is percent-encoded with a
//! strict set so it stays inside its segment, query values go through the URL serializer, header
//! values must be valid header bytes, and JSON body leaves take the typed value. None of them can
//! change the scheme, host or port; [`UrlTemplate::build`] asserts that again after building.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::header::{HeaderName, HeaderValue};
use serde_json::Value;
use url::Url;

use crate::action::Params;
use crate::error::{Error, ErrorKind, Result};

/// Everything except the unreserved characters `A-Z a-z 0-9 - . _ ~` is percent-encoded in a
/// path value, so `/`, `?`, `#`, `%`, `@`, `\` and control characters cannot leave the segment.
pub(crate) const PATH_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// One piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Piece {
    /// Literal text.
    Lit(String),
    /// A `{name}` placeholder.
    Param(String),
}

/// A text template: literal pieces and `{name}` placeholders.
///
/// Parsed the way [`crate::config::placeholders`] finds placeholders: a `{` up to the next `}`;
/// a `{` with no closing `}` is literal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Template {
    pieces: Vec<Piece>,
}

impl Template {
    pub(crate) fn parse(text: &str) -> Self {
        let mut pieces = Vec::new();
        let mut rest = text;
        while let Some(start) = rest.find('{') {
            let after = &rest[start + 1..];
            let Some(end) = after.find('}') else { break };
            if start > 0 {
                pieces.push(Piece::Lit(rest[..start].to_owned()));
            }
            pieces.push(Piece::Param(after[..end].to_owned()));
            rest = &after[end + 1..];
        }
        if !rest.is_empty() {
            pieces.push(Piece::Lit(rest.to_owned()));
        }
        Self { pieces }
    }

    pub(crate) fn pieces(&self) -> &[Piece] {
        &self.pieces
    }

    /// The placeholder names, in order.
    pub(crate) fn params(&self) -> impl Iterator<Item = &str> {
        self.pieces.iter().filter_map(|p| match p {
            Piece::Param(n) => Some(n.as_str()),
            Piece::Lit(_) => None,
        })
    }

    /// The single placeholder when the template is exactly `{name}`.
    pub(crate) fn as_single_param(&self) -> Option<&str> {
        match self.pieces.as_slice() {
            [Piece::Param(n)] => Some(n),
            _ => None,
        }
    }

    /// Whether the template has placeholders and none of them has a value, so the slot it fills
    /// (a query entry, a header) is left out.
    pub(crate) fn all_absent(&self, params: &Params) -> bool {
        let mut names = self.params().peekable();
        names.peek().is_some() && names.all(|n| params.get(n).is_none())
    }

    /// The text with each placeholder replaced by its value's text form (absent: empty).
    pub(crate) fn render(&self, params: &Params) -> String {
        let mut out = String::new();
        for p in &self.pieces {
            match p {
                Piece::Lit(t) => out.push_str(t),
                Piece::Param(n) => {
                    if let Some(v) = params.get(n) {
                        out.push_str(&v.to_string());
                    }
                }
            }
        }
        out
    }
}

/// Whether two URLs share scheme, host and port (the port defaulted by scheme).
pub(crate) fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host() == b.host()
        && a.port_or_known_default() == b.port_or_known_default()
}

/// `host` or `host:port` of a URL, for messages: never the path, query or user info.
pub(crate) fn authority(url: &Url) -> String {
    let host = url.host_str().unwrap_or("?");
    match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_owned(),
    }
}

/// The action's URL: a pinned origin, and a path template.
#[derive(Debug, Clone)]
pub(crate) struct UrlTemplate {
    /// `scheme://authority/`, parsed.
    origin: Url,
    /// The template text before the path (`scheme://authority`).
    origin_text: String,
    /// The path template (may be empty).
    path: Template,
    /// The normalized path before the first placeholder; every built path starts with it.
    prefix: String,
}

impl UrlTemplate {
    /// Parses an action's `url`.
    ///
    /// # Errors
    ///
    /// A message (for a config error) when the URL is not http(s), has no host, carries user
    /// info, a query or a fragment, or has a placeholder outside the path.
    pub(crate) fn parse(text: &str) -> std::result::Result<Self, String> {
        let Some((_, after_scheme)) = text.split_once("://") else {
            return Err(format!("`{text}` is not an absolute http or https URL"));
        };
        let authority_len = after_scheme.find('/').unwrap_or(after_scheme.len());
        let origin_text = text[..text.len() - after_scheme.len() + authority_len].to_owned();
        let path_text = &after_scheme[authority_len..];
        if origin_text.contains(['{', '}']) {
            return Err(
                "placeholders may appear only in the URL path, never in the scheme, host or port"
                    .into(),
            );
        }
        if path_text.contains(['?', '#']) || origin_text.contains(['?', '#']) {
            return Err(
                "the URL may not carry a query or fragment; put query parameters in `query`".into(),
            );
        }
        let origin = Url::parse(&format!("{origin_text}/"))
            .map_err(|e| format!("`{origin_text}` is not a URL: {e}"))?;
        if !matches!(origin.scheme(), "http" | "https") {
            return Err(format!("scheme `{}` is not http or https", origin.scheme()));
        }
        if origin.host().is_none() {
            return Err("the URL has no host".into());
        }
        if !origin.username().is_empty() || origin.password().is_some() {
            return Err("the URL must not carry user info; use `auth`".into());
        }
        let path = Template::parse(path_text);
        let static_text: String = path
            .pieces()
            .iter()
            .map_while(|p| match p {
                Piece::Lit(t) => Some(t.as_str()),
                Piece::Param(_) => None,
            })
            .collect();
        let prefix = Url::parse(&format!("{origin_text}{static_text}"))
            .map_err(|e| format!("`{text}` is not a URL: {e}"))?
            .path()
            .to_owned();
        Ok(Self {
            origin,
            origin_text,
            path,
            prefix,
        })
    }

    /// The pinned origin, as `scheme://authority/`.
    pub(crate) fn origin(&self) -> &Url {
        &self.origin
    }

    /// The placeholder names in the path.
    pub(crate) fn params(&self) -> impl Iterator<Item = &str> {
        self.path.params()
    }

    /// Builds the URL (no query yet) from `params`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidParameter`] when a path parameter has no value or its value is empty,
    /// `.` or `..` (URL parsers resolve those as dot segments). [`ErrorKind::SafetyRefused`]
    /// when the built URL leaves the pinned origin or the static path prefix (a bug guard;
    /// encoding makes it unreachable).
    pub(crate) fn build(&self, params: &Params) -> Result<Url> {
        let mut text = self.origin_text.clone();
        for p in self.path.pieces() {
            match p {
                Piece::Lit(t) => text.push_str(t),
                Piece::Param(name) => {
                    let value = params.get(name).ok_or_else(|| {
                        Error::new(
                            ErrorKind::InvalidParameter,
                            format!("parameter `{name}` is needed to build the URL path"),
                        )
                    })?;
                    let value = value.to_string();
                    if value.is_empty() || value == "." || value == ".." {
                        return Err(Error::new(
                            ErrorKind::InvalidParameter,
                            format!(
                                "parameter `{name}` is placed in the URL path and may not be empty, `.` or `..`"
                            ),
                        ));
                    }
                    text.extend(utf8_percent_encode(&value, PATH_VALUE));
                }
            }
        }
        let refused = || {
            Error::new(
                ErrorKind::SafetyRefused,
                format!(
                    "the URL built from the parameters leaves the pinned origin {} or path prefix `{}`; refused",
                    authority(&self.origin),
                    self.prefix
                ),
            )
        };
        let url = Url::parse(&text).map_err(|_| refused())?;
        if !same_origin(&url, &self.origin)
            || !url.path().starts_with(&self.prefix)
            || url.query().is_some()
            || url.fragment().is_some()
            || !url.username().is_empty()
            || url.password().is_some()
        {
            return Err(refused());
        }
        Ok(url)
    }
}

/// Appends the query entries whose templates have a value (see [`Template::all_absent`]).
pub(crate) fn append_query(url: &mut Url, query: &[(String, Template)], params: &Params) {
    let pairs: Vec<(&str, String)> = query
        .iter()
        .filter(|(_, t)| !t.all_absent(params))
        .map(|(k, t)| (k.as_str(), t.render(params)))
        .collect();
    if !pairs.is_empty() {
        url.query_pairs_mut().extend_pairs(pairs);
    }
}

/// Renders the header templates; a header whose placeholders are all absent is left out.
///
/// # Errors
///
/// [`ErrorKind::InvalidParameter`] naming the header when a value is not valid header bytes.
pub(crate) fn render_headers(
    action: &str,
    headers: &[(HeaderName, Template)],
    params: &Params,
) -> Result<Vec<(HeaderName, HeaderValue)>> {
    let mut out = Vec::new();
    for (name, t) in headers {
        if t.all_absent(params) {
            continue;
        }
        let value = HeaderValue::from_str(&t.render(params)).map_err(|_| {
            Error::new(
                ErrorKind::InvalidParameter,
                format!("header `{name}` of action `{action}`: the value is not a valid HTTP header value"),
            )
        })?;
        out.push((name.clone(), value));
    }
    Ok(out)
}

/// Fills a JSON body template. A string leaf that is exactly `"{p}"` becomes `p`'s typed value
/// (or is left out of its object or array when `p` has none); other strings have their
/// placeholders replaced by text. Returns `None` when the whole body is an absent `"{p}"`.
pub(crate) fn render_body(template: &Value, params: &Params) -> Option<Value> {
    match template {
        Value::String(s) => {
            let t = Template::parse(s);
            if let Some(name) = t.as_single_param() {
                params.get(name).map(|v| v.to_json())
            } else if t.params().next().is_some() {
                Some(Value::String(t.render(params)))
            } else {
                Some(template.clone())
            }
        }
        Value::Array(items) => Some(Value::Array(
            items
                .iter()
                .filter_map(|v| render_body(v, params))
                .collect(),
        )),
        Value::Object(fields) => Some(Value::Object(
            fields
                .iter()
                .filter_map(|(k, v)| render_body(v, params).map(|v| (k.clone(), v)))
                .collect(),
        )),
        other => Some(other.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::action::ParamValue;
    use serde_json::json;
    use std::collections::BTreeMap;

    fn params(pairs: &[(&str, ParamValue)]) -> Params {
        Params(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect::<BTreeMap<_, _>>(),
        )
    }

    fn s(v: &str) -> ParamValue {
        ParamValue::String(v.to_owned())
    }

    #[test]
    fn template_parsing_matches_config_placeholders() {
        for text in [
            "/a/{x}/b{y}c",
            "{x}",
            "plain",
            "a{b",
            "{x}{y}",
            "",
            "a}b{c}",
        ] {
            let t = Template::parse(text);
            let ours: Vec<&str> = t.params().collect();
            assert_eq!(ours, crate::config::placeholders(text), "{text}");
            let rebuilt: String = t
                .pieces()
                .iter()
                .map(|p| match p {
                    Piece::Lit(l) => l.clone(),
                    Piece::Param(n) => format!("{{{n}}}"),
                })
                .collect();
            assert_eq!(rebuilt, text);
        }
    }

    #[test]
    fn hostile_path_values_cannot_move_host_or_path() {
        let t = UrlTemplate::parse("https://api.example.com/v1/users/{id}/posts").unwrap();
        let cases = [
            ("../", "/v1/users/..%2F/posts"),
            ("../../admin", "/v1/users/..%2F..%2Fadmin/posts"),
            ("//other.example", "/v1/users/%2F%2Fother.example/posts"),
            ("%2F..", "/v1/users/%252F../posts"),
            ("%2e%2e", "/v1/users/%252e%252e/posts"),
            ("@evil", "/v1/users/%40evil/posts"),
            ("a\r\nb", "/v1/users/a%0D%0Ab/posts"),
            ("?x=1#f", "/v1/users/%3Fx%3D1%23f/posts"),
            ("a\\b", "/v1/users/a%5Cb/posts"),
            ("evil.example:443", "/v1/users/evil.example%3A443/posts"),
            ("...", "/v1/users/.../posts"),
            ("Zoë", "/v1/users/Zo%C3%AB/posts"),
            ("a-b_c.d~e", "/v1/users/a-b_c.d~e/posts"),
        ];
        for (value, path) in cases {
            let url = t.build(&params(&[("id", s(value))])).unwrap();
            assert_eq!(url.host_str(), Some("api.example.com"), "{value:?}");
            assert_eq!(url.port_or_known_default(), Some(443), "{value:?}");
            assert_eq!(url.scheme(), "https");
            assert_eq!(url.path(), path, "{value:?}");
            assert_eq!(url.query(), None, "{value:?}");
            assert_eq!(url.fragment(), None, "{value:?}");
        }
    }

    #[test]
    fn dot_segments_and_empty_values_are_refused() {
        let t = UrlTemplate::parse("https://api.example.com/v1/{a}").unwrap();
        for value in ["", ".", ".."] {
            let e = t.build(&params(&[("a", s(value))])).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidParameter, "{value:?}");
            assert!(e.message().contains("`a`"), "{e}");
        }
        let e = t.build(&params(&[])).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidParameter);
    }

    #[test]
    fn typed_values_and_mid_segment_placeholders() {
        let t = UrlTemplate::parse("http://api.example.com:8080/items/item-{n}.{fmt}").unwrap();
        let url = t
            .build(&params(&[
                ("n", ParamValue::Integer(-5)),
                ("fmt", s("json")),
            ]))
            .unwrap();
        assert_eq!(
            url.as_str(),
            "http://api.example.com:8080/items/item--5.json"
        );
        let t = UrlTemplate::parse("https://api.example.com").unwrap();
        assert_eq!(
            t.build(&Params::default()).unwrap().as_str(),
            "https://api.example.com/"
        );
    }

    #[test]
    fn url_templates_that_could_move_the_origin_are_config_errors() {
        for bad in [
            "https://{host}/x",
            "https://api.example.com:{port}/x",
            "https://api.example.com/x?y={y}",
            "https://api.example.com/x#{f}",
            "https://user:pw@api.example.com/x",
            "ftp://api.example.com/x",
            "api.example.com/x",
        ] {
            assert!(UrlTemplate::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn query_entries_with_only_absent_params_are_left_out() {
        let q = vec![
            ("limit".to_owned(), Template::parse("{limit}")),
            ("after".to_owned(), Template::parse("{after}")),
            ("fixed".to_owned(), Template::parse("yes")),
            ("range".to_owned(), Template::parse("{from}-{to}")),
        ];
        let mut url = Url::parse("https://api.example.com/x").unwrap();
        let p = params(&[("limit", ParamValue::Integer(10)), ("from", s("a&b=c#d"))]);
        append_query(&mut url, &q, &p);
        assert_eq!(url.query(), Some("limit=10&fixed=yes&range=a%26b%3Dc%23d-"));
        assert_eq!(url.host_str(), Some("api.example.com"));
        let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        assert_eq!(pairs[2], ("range".to_owned(), "a&b=c#d-".to_owned()));

        let mut bare = Url::parse("https://api.example.com/x").unwrap();
        append_query(&mut bare, &q[..2], &Params::default());
        assert_eq!(bare.as_str(), "https://api.example.com/x");
    }

    #[test]
    fn header_values_must_be_valid() {
        let h = vec![
            (HeaderName::from_static("x-tag"), Template::parse("t-{tag}")),
            (HeaderName::from_static("x-opt"), Template::parse("{opt}")),
        ];
        let ok = render_headers("demo", &h, &params(&[("tag", s("one"))])).unwrap();
        assert_eq!(ok.len(), 1);
        assert_eq!(ok[0].1, "t-one");
        let e =
            render_headers("demo", &h, &params(&[("tag", s("FAKE\r\nX-Evil: 1"))])).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidParameter);
        assert!(e.message().contains("`x-tag`"), "{e}");
        assert!(!e.message().contains("FAKE"), "{e}");
    }

    #[test]
    fn body_leaves_take_typed_values() {
        let template = json!({
            "n": "{n}",
            "flag": "{flag}",
            "name": "{name}",
            "greeting": "hi {name}!",
            "missing": "{missing}",
            "list": ["{n}", "{missing}", "lit"],
            "nested": {"x": "{n}", "k": 1, "b": true, "z": null},
        });
        let p = params(&[
            ("n", ParamValue::Integer(7)),
            ("flag", ParamValue::Boolean(false)),
            ("name", s("Ann \"q\"")),
        ]);
        let body = render_body(&template, &p).unwrap();
        assert_eq!(
            body,
            json!({
                "n": 7,
                "flag": false,
                "name": "Ann \"q\"",
                "greeting": "hi Ann \"q\"!",
                "list": [7, "lit"],
                "nested": {"x": 7, "k": 1, "b": true, "z": null},
            })
        );
        assert_eq!(render_body(&json!("{missing}"), &p), None);
    }
}
