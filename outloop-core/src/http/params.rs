//! Parameter validation and the JSON Schema of an action's parameters.

use std::collections::BTreeMap;

use regex::Regex;
use serde_json::{Value, json};

use crate::action::{ParamValue, Params, RawParams};
use crate::config::{ParamSpec, ParamType};
use crate::error::{Error, ErrorKind, Result};

/// The longest string parameter, in characters, when a spec sets no `max_length`.
pub const DEFAULT_MAX_LENGTH: usize = 1024;

/// Checks raw parameters against their declared specs and returns them in canonical form.
///
/// `raw` maps names to JSON values. The CLI passes every value as a JSON string, so an
/// `integer` parameter accepts a JSON number (also a whole one written `1.0` or `5e1`, within
/// ±2^53) or a string of decimal digits (`"42"`), and a `boolean`
/// accepts `true`/`false` or `"true"`/`"false"`. A JSON `null` counts as not given. Absent
/// parameters take their `default`; the result holds every parameter that has a value.
///
/// String rules: no control characters (CR, LF, NUL, tab, …) ever; at most `max_length`
/// characters (default [`DEFAULT_MAX_LENGTH`]); one of `enum` when set; the whole value matches
/// `pattern` when set (the pattern is anchored as `^(?:pattern)$`). Integer rules: `min` and
/// `max`, inclusive.
///
/// Error messages name the parameter and the rule, never a string value (a value may be a
/// pasted secret); integers may be shown.
///
/// # Errors
///
/// [`ErrorKind::InvalidParameter`] for an unknown parameter (the message lists the declared
/// ones), a missing required one, a wrong type or a broken rule. [`ErrorKind::Config`] when a
/// spec's pattern does not compile or its default breaks its own rules.
///
/// # Examples
///
/// ```
/// use std::collections::BTreeMap;
/// use outloop_core::action::{ParamValue, RawParams};
/// use outloop_core::config::ParamSpec;
/// use outloop_core::http::validate_params;
///
/// let spec: ParamSpec = toml::from_str("type = \"integer\"\nmin = 1\nmax = 100").unwrap();
/// let specs = BTreeMap::from([("limit".to_string(), spec)]);
/// let raw = RawParams::from([("limit".to_string(), serde_json::json!("10"))]);
/// let params = validate_params(&specs, &raw).unwrap();
/// assert_eq!(params.get("limit"), Some(&ParamValue::Integer(10)));
/// ```
pub fn validate_params(specs: &BTreeMap<String, ParamSpec>, raw: &RawParams) -> Result<Params> {
    CompiledParams::compile(specs)?.validate(None, raw)
}

/// Parameter specs with their patterns compiled once.
#[derive(Debug, Clone)]
pub(crate) struct CompiledParams {
    specs: BTreeMap<String, Compiled>,
}

#[derive(Debug, Clone)]
struct Compiled {
    spec: ParamSpec,
    pattern: Option<Regex>,
}

/// The pattern as matched: anchored so the whole value must match.
fn anchored(pattern: &str) -> String {
    format!("^(?:{pattern})$")
}

/// 2^53: every whole number up to this magnitude is exact in an `f64`.
const EXACT_IN_F64: f64 = 9_007_199_254_740_992.0;

/// A caller-supplied name, shortened and made printable for an error message.
fn shown(name: &str) -> String {
    let mut s: String = name.chars().take(64).collect();
    if name.chars().count() > 64 {
        s.push('…');
    }
    s.escape_debug().to_string()
}

impl CompiledParams {
    /// Compiles every pattern.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Config`] naming the parameter whose pattern does not compile.
    pub(crate) fn compile(specs: &BTreeMap<String, ParamSpec>) -> Result<Self> {
        let mut out = BTreeMap::new();
        for (name, spec) in specs {
            let pattern = match &spec.pattern {
                Some(p) => Some(Regex::new(&anchored(p)).map_err(|e| {
                    let why = e.to_string();
                    let why = why.lines().last().unwrap_or("").trim().to_owned();
                    Error::config(format!(
                        "parameter `{name}`: bad regular expression in `pattern`: {why}"
                    ))
                })?),
                None => None,
            };
            out.insert(
                name.clone(),
                Compiled {
                    spec: spec.clone(),
                    pattern,
                },
            );
        }
        Ok(Self { specs: out })
    }

    /// Validates `raw`; `action` names the action in messages when given.
    pub(crate) fn validate(&self, action: Option<&str>, raw: &RawParams) -> Result<Params> {
        let invalid = |msg: String| Error::new(ErrorKind::InvalidParameter, msg);
        for name in raw.keys() {
            if !self.specs.contains_key(name) {
                let declared = if self.specs.is_empty() {
                    "it declares none".to_owned()
                } else {
                    let list: Vec<String> = self.specs.keys().map(|k| format!("`{k}`")).collect();
                    format!("declared: {}", list.join(", "))
                };
                let of = action
                    .map(|a| format!(" for action `{a}`"))
                    .unwrap_or_default();
                return Err(invalid(format!(
                    "unknown parameter `{}`{of}; {declared}",
                    shown(name)
                )));
            }
        }
        let mut out = BTreeMap::new();
        for (name, c) in &self.specs {
            let subject = match action {
                Some(a) => format!("parameter `{name}` of action `{a}`"),
                None => format!("parameter `{name}`"),
            };
            match raw.get(name).filter(|v| !v.is_null()) {
                Some(v) => {
                    let value = c
                        .check(v)
                        .map_err(|rule| invalid(format!("{subject} {rule}")))?;
                    out.insert(name.clone(), value);
                }
                None => match &c.spec.default {
                    Some(d) => {
                        let value = c.check(d).map_err(|rule| {
                            Error::config(format!("the default of {subject} {rule}"))
                        })?;
                        out.insert(name.clone(), value);
                    }
                    None if c.spec.is_required() => {
                        return Err(invalid(format!("{subject} is required")));
                    }
                    None => {}
                },
            }
        }
        Ok(Params(out))
    }

    /// The JSON Schema (an object schema) of the parameters.
    pub(crate) fn schema(&self) -> Value {
        let mut props = serde_json::Map::new();
        let mut required = Vec::new();
        for (name, c) in &self.specs {
            let s = &c.spec;
            let mut p = serde_json::Map::new();
            let ty = match s.ty {
                ParamType::String => "string",
                ParamType::Integer => "integer",
                ParamType::Boolean => "boolean",
            };
            p.insert("type".into(), json!(ty));
            if let Some(d) = &s.description {
                p.insert("description".into(), json!(d));
            }
            if s.ty == ParamType::String {
                if let Some(values) = &s.values {
                    p.insert("enum".into(), json!(values));
                }
                if let Some(pat) = &s.pattern {
                    p.insert("pattern".into(), json!(anchored(pat)));
                }
                p.insert(
                    "maxLength".into(),
                    json!(s.max_length.unwrap_or(DEFAULT_MAX_LENGTH)),
                );
            }
            if s.ty == ParamType::Integer {
                if let Some(min) = s.min {
                    p.insert("minimum".into(), json!(min));
                }
                if let Some(max) = s.max {
                    p.insert("maximum".into(), json!(max));
                }
            }
            if let Some(d) = &s.default {
                p.insert("default".into(), d.clone());
            }
            if s.is_required() {
                required.push(json!(name));
            }
            props.insert(name.clone(), Value::Object(p));
        }
        json!({
            "type": "object",
            "properties": props,
            "required": required,
            "additionalProperties": false,
        })
    }
}

impl Compiled {
    /// Checks one value; on failure returns the broken rule as a message tail
    /// (`"must be …"`), never the string value.
    fn check(&self, v: &Value) -> std::result::Result<ParamValue, String> {
        let s = &self.spec;
        match s.ty {
            ParamType::String => {
                let Value::String(text) = v else {
                    return Err("must be a string".into());
                };
                if text.chars().any(char::is_control) {
                    return Err(
                        "must not contain control characters (CR, LF, NUL, tab and the like)"
                            .into(),
                    );
                }
                let limit = s.max_length.unwrap_or(DEFAULT_MAX_LENGTH);
                if text.chars().count() > limit {
                    return Err(format!("is longer than {limit} characters"));
                }
                if let Some(values) = &s.values
                    && !values.iter().any(|x| x == text)
                {
                    let list: Vec<String> = values.iter().map(|x| format!("`{x}`")).collect();
                    return Err(format!("must be one of {}", list.join(", ")));
                }
                if let (Some(re), Some(pat)) = (&self.pattern, &s.pattern)
                    && !re.is_match(text)
                {
                    return Err(format!("does not match the pattern `{pat}`"));
                }
                Ok(ParamValue::String(text.clone()))
            }
            ParamType::Integer => {
                let n = match v {
                    Value::Number(n) => match (n.as_i64(), n.as_f64()) {
                        (Some(i), _) => i,
                        // A number written with a fraction part or an exponent (`1.0`, `2e3`)
                        // is an integer when its value is one, as in JSON Schema, as long as
                        // the float holds it exactly (within ±2^53; `as` is exact there).
                        (None, Some(f)) if f.fract() == 0.0 && f.abs() <= EXACT_IN_F64 => f as i64,
                        (None, Some(f)) if f.fract() != 0.0 => {
                            return Err("must be an integer, not a fraction".into());
                        }
                        // Past ±2^53 the float may already differ from what was written
                        // (serde_json reads integers past the 64-bit range as floats too).
                        (None, _) => {
                            return Err("is out of the 64-bit integer range, or past ±2^53 \
                                        written with a fraction part or exponent"
                                .into());
                        }
                    },
                    Value::String(t) => {
                        let digits = t.strip_prefix('-').unwrap_or(t);
                        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                            return Err(
                                "must be an integer (a JSON number, or a string of decimal digits)"
                                    .into(),
                            );
                        }
                        t.parse::<i64>()
                            .map_err(|_| "is out of the 64-bit integer range".to_owned())?
                    }
                    _ => {
                        return Err(
                            "must be an integer (a JSON number, or a string of decimal digits)"
                                .into(),
                        );
                    }
                };
                if let Some(min) = s.min
                    && n < min
                {
                    return Err(format!("must be at least {min}"));
                }
                if let Some(max) = s.max
                    && n > max
                {
                    return Err(format!("must be at most {max}"));
                }
                Ok(ParamValue::Integer(n))
            }
            ParamType::Boolean => match v {
                Value::Bool(b) => Ok(ParamValue::Boolean(*b)),
                Value::String(t) if t == "true" => Ok(ParamValue::Boolean(true)),
                Value::String(t) if t == "false" => Ok(ParamValue::Boolean(false)),
                _ => Err("must be true or false".into()),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(toml_text: &str) -> ParamSpec {
        toml::from_str(toml_text).expect("test spec parses")
    }

    fn specs() -> BTreeMap<String, ParamSpec> {
        BTreeMap::from([
            (
                "limit".to_owned(),
                spec("type = \"integer\"\nmin = 1\nmax = 100\ndefault = 10"),
            ),
            (
                "after".to_owned(),
                spec("type = \"string\"\npattern = \"[0-9]+\"\nrequired = false"),
            ),
            (
                "id".to_owned(),
                spec("type = \"string\"\nmax_length = 12\ndescription = \"The id\""),
            ),
            (
                "order".to_owned(),
                spec("type = \"string\"\nenum = [\"asc\", \"desc\"]\nrequired = false"),
            ),
            (
                "archived".to_owned(),
                spec("type = \"boolean\"\nrequired = false"),
            ),
            (
                "name".to_owned(),
                spec("type = \"string\"\nrequired = false"),
            ),
        ])
    }

    fn raw(pairs: &[(&str, Value)]) -> RawParams {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect()
    }

    #[test]
    fn accepted_values_in_canonical_form() {
        let c = CompiledParams::compile(&specs()).unwrap();
        let cases: Vec<(RawParams, Vec<(&str, ParamValue)>)> = vec![
            (
                raw(&[("id", json!("abc"))]),
                vec![
                    ("id", ParamValue::String("abc".into())),
                    ("limit", ParamValue::Integer(10)),
                ],
            ),
            (
                raw(&[("id", json!("abc")), ("limit", json!("42"))]),
                vec![
                    ("id", ParamValue::String("abc".into())),
                    ("limit", ParamValue::Integer(42)),
                ],
            ),
            (
                raw(&[
                    ("id", json!("a")),
                    ("limit", json!(100)),
                    ("after", json!("123")),
                ]),
                vec![
                    ("after", ParamValue::String("123".into())),
                    ("id", ParamValue::String("a".into())),
                    ("limit", ParamValue::Integer(100)),
                ],
            ),
            (
                raw(&[
                    ("id", json!("a")),
                    ("archived", json!("true")),
                    ("order", json!("desc")),
                ]),
                vec![
                    ("archived", ParamValue::Boolean(true)),
                    ("id", ParamValue::String("a".into())),
                    ("limit", ParamValue::Integer(10)),
                    ("order", ParamValue::String("desc".into())),
                ],
            ),
            (
                raw(&[
                    ("id", json!("a")),
                    ("archived", json!(false)),
                    ("after", Value::Null),
                ]),
                vec![
                    ("archived", ParamValue::Boolean(false)),
                    ("id", ParamValue::String("a".into())),
                    ("limit", ParamValue::Integer(10)),
                ],
            ),
            (
                // A whole number written as a float is an integer, as in JSON Schema.
                raw(&[
                    ("id", json!("a")),
                    ("limit", serde_json::from_str("1.0").unwrap()),
                ]),
                vec![
                    ("id", ParamValue::String("a".into())),
                    ("limit", ParamValue::Integer(1)),
                ],
            ),
            (
                raw(&[
                    ("id", json!("a")),
                    ("limit", serde_json::from_str("5e1").unwrap()),
                ]),
                vec![
                    ("id", ParamValue::String("a".into())),
                    ("limit", ParamValue::Integer(50)),
                ],
            ),
            (
                raw(&[
                    ("id", json!("a")),
                    ("limit", json!("7")),
                    ("name", json!("Zoë ✓")),
                ]),
                vec![
                    ("id", ParamValue::String("a".into())),
                    ("limit", ParamValue::Integer(7)),
                    ("name", ParamValue::String("Zoë ✓".into())),
                ],
            ),
        ];
        for (i, (input, want)) in cases.into_iter().enumerate() {
            let got = c.validate(Some("demo"), &input);
            let want: BTreeMap<String, ParamValue> =
                want.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
            assert_eq!(got.unwrap().0, want, "case {i}");
        }
    }

    #[test]
    fn refusals_name_the_parameter_and_rule_but_not_the_value() {
        const SECRET: &str = "FAKE-sk-live-0123456789";
        let c = CompiledParams::compile(&specs()).unwrap();
        let long = format!("{SECRET}{}", "x".repeat(20));
        let cases: Vec<(RawParams, &[&str])> = vec![
            (raw(&[]), &["parameter `id` of action `demo` is required"]),
            (
                raw(&[("id", json!("a")), ("bogus", json!(SECRET))]),
                &[
                    "unknown parameter `bogus` for action `demo`",
                    "`after`",
                    "`limit`",
                ],
            ),
            (raw(&[("id", json!(7))]), &["`id`", "must be a string"]),
            (
                raw(&[("id", json!(long))]),
                &["`id`", "longer than 12 characters"],
            ),
            (
                raw(&[("id", json!(format!("{SECRET}\r\nX-Evil: 1")))]),
                &["`id`", "control characters"],
            ),
            (
                raw(&[("id", json!("a\0b"))]),
                &["`id`", "control characters"],
            ),
            (
                raw(&[("id", json!("a\tb"))]),
                &["`id`", "control characters"],
            ),
            (
                raw(&[("id", json!("a")), ("after", json!(SECRET))]),
                &["`after`", "does not match the pattern `[0-9]+`"],
            ),
            (
                raw(&[("id", json!("a")), ("after", json!("12a"))]),
                &["`after`", "pattern"],
            ),
            (
                raw(&[("id", json!("a")), ("order", json!(SECRET))]),
                &["`order`", "must be one of `asc`, `desc`"],
            ),
            (
                raw(&[("id", json!("a")), ("limit", json!(101))]),
                &["`limit`", "at most 100"],
            ),
            (
                raw(&[("id", json!("a")), ("limit", json!(0))]),
                &["`limit`", "at least 1"],
            ),
            (
                raw(&[("id", json!("a")), ("limit", json!("-0"))]),
                &["`limit`", "at least 1"],
            ),
            (
                raw(&[("id", json!("a")), ("limit", json!(SECRET))]),
                &["`limit`", "must be an integer"],
            ),
            (
                raw(&[("id", json!("a")), ("limit", json!(" 5"))]),
                &["`limit`", "must be an integer"],
            ),
            (
                raw(&[("id", json!("a")), ("limit", json!(2.5))]),
                &["`limit`", "fraction"],
            ),
            (
                raw(&[("id", json!("a")), ("limit", json!(u64::MAX))]),
                &["`limit`", "out of the 64-bit"],
            ),
            (
                // Parsed as a float (past u64), whole: out of range, not a fraction.
                raw(&[
                    ("id", json!("a")),
                    (
                        "limit",
                        serde_json::from_str("99999999999999999999999").unwrap(),
                    ),
                ]),
                &["`limit`", "out of the 64-bit"],
            ),
            (
                raw(&[("id", json!("a")), ("limit", json!(9.3e18))]),
                &["`limit`", "out of the 64-bit"],
            ),
            (
                // Past i64::MIN, read as a float that rounds to it: refused, not clamped.
                raw(&[
                    ("id", json!("a")),
                    (
                        "limit",
                        serde_json::from_str("-9223372036854775809").unwrap(),
                    ),
                ]),
                &["`limit`", "out of the 64-bit"],
            ),
            (
                // In range but past 2^53 as a float: the float is not what was written.
                raw(&[
                    ("id", json!("a")),
                    ("limit", serde_json::from_str("9007199254740993.0").unwrap()),
                ]),
                &["`limit`", "past ±2^53"],
            ),
            (
                raw(&[("id", json!("a")), ("limit", json!(0.5))]),
                &["`limit`", "fraction"],
            ),
            (
                raw(&[("id", json!("a")), ("limit", json!(1.0e2 + 1.0))]),
                &["`limit`", "at most 100"],
            ),
            (
                raw(&[("id", json!("a")), ("limit", json!("99999999999999999999"))]),
                &["`limit`", "out of the 64-bit"],
            ),
            (
                raw(&[("id", json!("a")), ("archived", json!("yes"))]),
                &["`archived`", "true or false"],
            ),
            (
                raw(&[("id", json!("a")), ("archived", json!(1))]),
                &["`archived`", "true or false"],
            ),
        ];
        for (input, needles) in cases {
            let e = c.validate(Some("demo"), &input).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidParameter, "{e}");
            for n in needles {
                assert!(e.message().contains(n), "`{e}` lacks `{n}`");
            }
            assert!(!e.message().contains("FAKE"), "value echoed: {e}");
            assert!(!e.message().contains("X-Evil"), "value echoed: {e}");
            assert!(!e.message().contains("101"), "integer value echoed: {e}");
        }
    }

    #[test]
    fn pattern_matches_the_whole_value() {
        let specs = BTreeMap::from([(
            "p".to_owned(),
            spec("type = \"string\"\npattern = \"abc|def\""),
        )]);
        for (v, ok) in [
            ("abc", true),
            ("def", true),
            ("abcdef", false),
            ("xabc", false),
        ] {
            let got = validate_params(&specs, &raw(&[("p", json!(v))]));
            assert_eq!(got.is_ok(), ok, "{v}");
        }
    }

    #[test]
    fn default_max_length_is_1024_characters() {
        let specs = BTreeMap::from([("p".to_owned(), spec("type = \"string\""))]);
        let ok = "é".repeat(1024);
        validate_params(&specs, &raw(&[("p", json!(ok))])).unwrap();
        let e = validate_params(&specs, &raw(&[("p", json!("é".repeat(1025)))])).unwrap_err();
        assert!(e.message().contains("longer than 1024"), "{e}");
        // Without an action name, messages still name the parameter.
        assert!(e.message().starts_with("parameter `p` "), "{e}");
    }

    #[test]
    fn unknown_parameter_without_declared_ones() {
        let e = validate_params(&BTreeMap::new(), &raw(&[("x", json!(1))])).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidParameter);
        assert_eq!(e.message(), "unknown parameter `x`; it declares none");
    }

    #[test]
    fn bad_pattern_and_bad_default_are_config_errors() {
        let bad = BTreeMap::from([("p".to_owned(), spec("type = \"string\"\npattern = \"(\""))]);
        let e = validate_params(&bad, &RawParams::new()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config);
        assert!(e.message().contains("`p`"), "{e}");

        let bad_default = BTreeMap::from([(
            "n".to_owned(),
            spec("type = \"integer\"\nmax = 5\ndefault = 10"),
        )]);
        let e = validate_params(&bad_default, &RawParams::new()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config);
        assert!(e.message().contains("default of parameter `n`"), "{e}");
    }

    #[test]
    fn schema_lists_types_rules_and_required() {
        let schema = CompiledParams::compile(&specs()).unwrap().schema();
        assert_eq!(schema["type"], "object");
        assert_eq!(schema["additionalProperties"], false);
        assert_eq!(schema["required"], json!(["id"]));
        let p = &schema["properties"];
        assert_eq!(
            p["limit"],
            json!({"type": "integer", "minimum": 1, "maximum": 100, "default": 10})
        );
        assert_eq!(
            p["after"],
            json!({"type": "string", "pattern": "^(?:[0-9]+)$", "maxLength": 1024})
        );
        assert_eq!(
            p["id"],
            json!({"type": "string", "description": "The id", "maxLength": 12})
        );
        assert_eq!(p["order"]["enum"], json!(["asc", "desc"]));
        assert_eq!(p["archived"], json!({"type": "boolean"}));
    }
}
