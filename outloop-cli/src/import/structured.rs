//! JSON and YAML sources for `import`, with the positions of their string values.
//!
//! - JSON (RFC 8259): the document is one object; each member whose value is a string is an
//!   entry, its span the string token (quotes included). Other members are kept as they are.
//!   Values are decoded by serde_json.
//! - YAML (1.2, parsed by yaml-rust2): the document is one block mapping; each top-level key
//!   whose value is a single-line plain, single- or double-quoted scalar is an entry, its span
//!   from the key to the end of the value. The value is the parser's; the span is checked by
//!   parsing `k: <span text>` again. A multi-line or block scalar under a key is refused (move
//!   it by hand); nested mappings and sequences are kept.

use outloop_core::SecretValue;
use yaml_rust2::parser::{Event, Parser};
use yaml_rust2::scanner::TScalarStyle;

use super::dotenv::{Entry, SyntaxError};

fn err(line: usize, message: impl Into<String>) -> SyntaxError {
    SyntaxError {
        line,
        message: message.into(),
    }
}

fn line_of(text: &str, pos: usize) -> usize {
    text.as_bytes()[..pos.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

fn skip_ws(b: &[u8], mut pos: usize) -> usize {
    while pos < b.len() && matches!(b[pos], b' ' | b'\t' | b'\n' | b'\r') {
        pos += 1;
    }
    pos
}

/// The end (exclusive) of the JSON string token starting at `pos` (a `"`).
fn string_end(b: &[u8], mut pos: usize) -> Option<usize> {
    pos += 1;
    while pos < b.len() {
        match b[pos] {
            b'\\' => pos += 2,
            b'"' => return Some(pos + 1),
            _ => pos += 1,
        }
    }
    None
}

/// Parses a JSON object's string members.
///
/// # Errors
///
/// A [`SyntaxError`] naming the line when the text is not a JSON object.
pub fn parse_json(text: &str) -> Result<Vec<Entry>, SyntaxError> {
    // Validate the whole document first, so the scan below only walks well-formed JSON.
    let doc: serde_json::Value =
        serde_json::from_str(text).map_err(|e| err(e.line(), format!("not valid JSON: {e}")))?;
    if !doc.is_object() {
        return Err(err(1, "the document is not a JSON object"));
    }
    let b = text.as_bytes();
    let mut pos = skip_ws(b, 0) + 1; // past `{`
    let mut out = Vec::new();
    loop {
        pos = skip_ws(b, pos);
        match b.get(pos) {
            Some(b'}') | None => return Ok(out),
            Some(b',') => {
                pos += 1;
                continue;
            }
            _ => {}
        }
        let kend = string_end(b, pos).ok_or_else(|| err(line_of(text, pos), "bad key"))?;
        let key: String = serde_json::from_str(&text[pos..kend])
            .map_err(|_| err(line_of(text, pos), "bad key"))?;
        pos = skip_ws(b, kend) + 1; // past `:`
        let vstart = skip_ws(b, pos);
        let mut stream =
            serde_json::Deserializer::from_str(&text[vstart..]).into_iter::<serde_json::Value>();
        let value = stream
            .next()
            .and_then(std::result::Result::ok)
            .ok_or_else(|| {
                err(
                    line_of(text, vstart),
                    format!("{}: bad value", super::shown_key(&key)),
                )
            })?;
        let vend = vstart + stream.byte_offset();
        if let serde_json::Value::String(s) = value {
            out.push(Entry {
                key,
                value: SecretValue::from_string(s),
                line: line_of(text, vstart),
                span: vstart..vend,
                interpolated: false,
            });
        }
        pos = vend;
    }
}

/// Parses a YAML mapping's single-line string values.
///
/// # Errors
///
/// A [`SyntaxError`] naming the line when the text is not YAML, not a mapping, or a
/// top-level string value spans several lines.
pub fn parse_yaml(text: &str) -> Result<Vec<Entry>, SyntaxError> {
    let mut parser = Parser::new_from_str(text);
    let mut events = Vec::new();
    loop {
        let (ev, mark) = parser
            .next_token()
            .map_err(|e| err(e.marker().line(), format!("not valid YAML: {e}")))?;
        let end = ev == Event::StreamEnd;
        events.push((ev, mark));
        if end {
            break;
        }
    }
    let starts: Vec<usize> = std::iter::once(0)
        .chain(text.match_indices('\n').map(|(i, _)| i + 1))
        .collect();
    // Byte offset of a marker, from its 1-based line and 0-based character column.
    let offset = |line: usize, col: usize| -> usize {
        let s = starts
            .get(line.saturating_sub(1))
            .copied()
            .unwrap_or(text.len());
        text[s..]
            .char_indices()
            .nth(col)
            .map_or(text.len(), |(i, _)| s + i)
    };
    let mut out = Vec::new();
    let mut i = 0;
    // StreamStart, DocumentStart, MappingStart.
    while i < events.len() && matches!(events[i].0, Event::StreamStart | Event::DocumentStart) {
        i += 1;
    }
    match events.get(i) {
        Some((Event::MappingStart(..), _)) => i += 1,
        Some((Event::StreamEnd, _)) => return Ok(out),
        Some((_, m)) => return Err(err(m.line(), "the document is not a YAML mapping")),
        None => return Ok(out),
    }
    while let Some((ev, kmark)) = events.get(i) {
        let Event::Scalar(key, _, _, _) = ev else {
            break; // MappingEnd (or a complex key, which ends the walk)
        };
        i += 1;
        let Some((vev, vmark)) = events.get(i) else {
            break;
        };
        match vev {
            Event::Scalar(value, style, _, _) => {
                i += 1;
                let single_line = matches!(
                    style,
                    TScalarStyle::Plain | TScalarStyle::SingleQuoted | TScalarStyle::DoubleQuoted
                );
                if !single_line {
                    if !value.is_empty() {
                        return Err(err(
                            vmark.line(),
                            format!(
                                "{}: block scalars (`|`, `>`) are not supported; move this value by hand",
                                super::shown_key(key)
                            ),
                        ));
                    }
                    continue;
                }
                let kstart = offset(kmark.line(), kmark.col());
                let vstart = offset(vmark.line(), vmark.col());
                let line_end = text[vstart..].find('\n').map_or(text.len(), |n| vstart + n);
                let raw = text[vstart..line_end].trim_end_matches('\r');
                let vend = vstart + scalar_len(raw, style);
                let checked = vmark.line() == kmark.line()
                    && reparse(&text[vstart..vend]).as_deref() == Some(value.as_str());
                if !checked {
                    if matches!(style, TScalarStyle::Plain) && value.is_empty() {
                        continue;
                    }
                    return Err(err(
                        vmark.line(),
                        format!(
                            "{}: only single-line values on the key's line are supported; move this value by hand",
                            super::shown_key(key)
                        ),
                    ));
                }
                out.push(Entry {
                    key: key.clone(),
                    value: SecretValue::from_string(value.clone()),
                    line: kmark.line(),
                    span: kstart..vend,
                    interpolated: false,
                });
            }
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                // Skip the nested value.
                let mut depth = 0usize;
                while let Some((e, _)) = events.get(i) {
                    i += 1;
                    match e {
                        Event::MappingStart(..) | Event::SequenceStart(..) => depth += 1,
                        Event::MappingEnd | Event::SequenceEnd => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        _ => {}
                    }
                }
            }
            _ => i += 1,
        }
    }
    Ok(out)
}

/// The length in bytes of the scalar token at the start of `raw` (the rest of its line).
fn scalar_len(raw: &str, style: &TScalarStyle) -> usize {
    let b = raw.as_bytes();
    match style {
        TScalarStyle::DoubleQuoted => string_end(b, 0).unwrap_or(b.len()),
        TScalarStyle::SingleQuoted => {
            let mut pos = 1;
            while pos < b.len() {
                if b[pos] == b'\'' {
                    if b.get(pos + 1) == Some(&b'\'') {
                        pos += 2;
                        continue;
                    }
                    return pos + 1;
                }
                pos += 1;
            }
            b.len()
        }
        _ => {
            let cut = raw
                .char_indices()
                .find(|&(i, c)| c == '#' && i > 0 && matches!(b[i - 1], b' ' | b'\t'))
                .map_or(raw.len(), |(i, _)| i);
            raw[..cut].trim_end().len()
        }
    }
}

/// The string value of `k: <token>`, parsed on its own.
fn reparse(token: &str) -> Option<String> {
    let doc = format!("k: {token}\n");
    let mut parser = Parser::new_from_str(&doc);
    let mut scalars = Vec::new();
    loop {
        match parser.next_token().ok()?.0 {
            Event::StreamEnd => break,
            Event::Scalar(s, ..) => scalars.push(s),
            Event::MappingStart(..) | Event::SequenceStart(..) if !scalars.is_empty() => {
                return None;
            }
            _ => {}
        }
    }
    (scalars.len() == 2).then(|| scalars.swap_remove(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(entries: &[Entry], text: &str) -> Vec<(String, String, usize, String)> {
        entries
            .iter()
            .map(|e| {
                (
                    e.key.clone(),
                    String::from_utf8(e.value.expose_secret().to_vec()).unwrap(),
                    e.line,
                    text[e.span.clone()].to_owned(),
                )
            })
            .collect()
    }

    #[test]
    fn json_string_members_with_spans() {
        let text = "{\n  \"A\": \"x\\\"y\",\n  \"n\": 3, \"o\": {\"B\": \"in\"},\n  \"C\" :\"\u{e9}\"\n}\n";
        let got = kv(&parse_json(text).unwrap(), text);
        assert_eq!(
            got,
            [
                ("A".into(), "x\"y".into(), 2, "\"x\\\"y\"".into()),
                ("C".into(), "\u{e9}".into(), 4, "\"\u{e9}\"".into()),
            ]
        );
        assert_eq!(parse_json("[1]").unwrap_err().line, 1);
        assert!(parse_json("{\"a\": }").is_err());
    }

    #[test]
    fn yaml_single_line_values_with_spans() {
        let text = "# top\nA: plain value # c\nB: 'it''s'\nC: \"q\\n\"\nnested:\n  D: skip\nE: \u{e9}t\u{e9}\nF:\n";
        let got = kv(&parse_yaml(text).unwrap(), text);
        assert_eq!(
            got,
            [
                ("A".into(), "plain value".into(), 2, "A: plain value".into()),
                ("B".into(), "it's".into(), 3, "B: 'it''s'".into()),
                ("C".into(), "q\n".into(), 4, "C: \"q\\n\"".into()),
                (
                    "E".into(),
                    "\u{e9}t\u{e9}".into(),
                    7,
                    "E: \u{e9}t\u{e9}".into()
                ),
            ]
        );
    }

    #[test]
    fn yaml_refuses_multi_line_values_by_line() {
        let e = parse_yaml("A: x\nB: |\n  l1\n  l2\n").unwrap_err();
        assert!(e.message.starts_with("B: block scalars"), "{}", e.message);
        let e = parse_yaml("A:\n  \"split\n  value\"\n").unwrap_err();
        assert!(
            e.message.starts_with("A: only single-line"),
            "{}",
            e.message
        );
        assert!(parse_yaml("- a\n- b\n").is_err());
    }
}
