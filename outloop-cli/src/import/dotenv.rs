//! A `.env` parser that keeps positions, so `import` can replace one assignment and keep every
//! other byte of the file.
//!
//! The syntax is the one dotenv loaders share (dotenvy, python-dotenv, Docker Compose
//! `env_file`, Node's `--env-file`):
//!
//! - blank lines and full-line comments (`# …`, leading whitespace allowed);
//! - `KEY=VALUE` with an optional `export ` prefix and optional spaces or tabs around `=`;
//!   `KEY` is `[A-Za-z_][A-Za-z0-9_.-]*`;
//! - unquoted values run to the end of the line; ` #` (whitespace then `#`) starts a trailing
//!   comment; surrounding whitespace is trimmed;
//! - single-quoted values are literal and may span lines;
//! - double-quoted values may span lines and take the escapes `\n`, `\r`, `\t`, `\"`, `\\`,
//!   `\'`, `\$` and `` \` ``; any other backslash is kept with the character after it;
//! - after a closing quote only whitespace and a trailing comment may follow.
//!
//! `${VAR}` and `$VAR` are not expanded: an entry whose (unquoted or double-quoted) value
//! holds one is marked [`Entry::interpolated`] and is never moved.

use std::ops::Range;

use outloop_core::SecretValue;

/// One `KEY=VALUE` assignment.
#[derive(Debug)]
pub struct Entry {
    /// The key.
    pub key: String,
    /// The decoded value.
    pub value: SecretValue,
    /// 1-based line of the key.
    pub line: usize,
    /// The bytes of the assignment, from `export`/the key to the end of the value (closing
    /// quote included); indentation, a trailing comment and the line ending are outside it.
    pub span: Range<usize>,
    /// The value refers to another variable (`${VAR}` or `$VAR`, unquoted or double-quoted).
    pub interpolated: bool,
}

/// A syntax error: the 1-based line and what is wrong (never a value, and never any text of
/// the line: a line that is only a token must not be echoed).
#[derive(Debug, PartialEq, Eq)]
pub struct SyntaxError {
    /// 1-based line.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

struct Cursor<'a> {
    s: &'a [u8],
    pos: usize,
    line: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }
    fn skip_blanks(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
    }
    fn at_eol(&self) -> bool {
        matches!(self.peek(), None | Some(b'\n'))
            || (self.peek() == Some(b'\r') && self.s.get(self.pos + 1) == Some(&b'\n'))
    }
    /// Moves past the rest of the line and its line ending.
    fn next_line(&mut self) {
        while let Some(c) = self.peek() {
            self.pos += 1;
            if c == b'\n' {
                self.line += 1;
                return;
            }
        }
    }
    fn err(&self, line: usize, message: impl Into<String>) -> SyntaxError {
        SyntaxError {
            line,
            message: message.into(),
        }
    }
}

/// Parses a `.env` text into its assignments, in file order.
///
/// # Errors
///
/// A [`SyntaxError`] naming the line when a line is neither blank, a comment nor an
/// assignment, a quote is not closed, or text follows a closing quote.
pub fn parse(text: &str) -> Result<Vec<Entry>, SyntaxError> {
    let mut c = Cursor {
        s: text.as_bytes(),
        pos: 0,
        line: 1,
    };
    let mut out = Vec::new();
    while c.pos < c.s.len() {
        c.skip_blanks();
        if c.at_eol() || c.peek() == Some(b'#') {
            c.next_line();
            continue;
        }
        let start = c.pos;
        let line = c.line;
        if c.s[c.pos..].starts_with(b"export") && matches!(c.s.get(c.pos + 6), Some(b' ' | b'\t')) {
            c.pos += 6;
            c.skip_blanks();
        }
        let key_start = c.pos;
        while let Some(b) = c.peek() {
            let ok = b.is_ascii_alphabetic()
                || b == b'_'
                || (c.pos > key_start && (b.is_ascii_digit() || b == b'.' || b == b'-'));
            if !ok {
                break;
            }
            c.pos += 1;
        }
        if c.pos == key_start {
            return Err(c.err(line, "expected `KEY=value`, a comment or a blank line"));
        }
        let key = text[key_start..c.pos].to_owned();
        c.skip_blanks();
        if c.peek() != Some(b'=') {
            return Err(c.err(line, "expected `KEY=value`"));
        }
        c.pos += 1;
        c.skip_blanks();
        let (value, interpolated) = match c.peek() {
            Some(q @ (b'"' | b'\'')) => {
                let (v, interp) = quoted(&mut c, q, line)?;
                let end = c.pos;
                c.skip_blanks();
                if !(c.at_eol() || c.peek() == Some(b'#')) {
                    return Err(c.err(c.line, "unexpected text after the closing quote"));
                }
                c.pos = end;
                (v, interp)
            }
            _ => {
                let vstart = c.pos;
                let mut end = c.pos;
                while !c.at_eol() {
                    let b = c.s[c.pos];
                    if b == b'#' && c.pos > vstart && matches!(c.s[c.pos - 1], b' ' | b'\t') {
                        break;
                    }
                    c.pos += 1;
                    if !matches!(b, b' ' | b'\t') {
                        end = c.pos;
                    }
                }
                let v = text.as_bytes()[vstart..end].to_vec();
                c.pos = end;
                let interp = refers_to_variable(&v);
                (v, interp)
            }
        };
        out.push(Entry {
            key,
            value: SecretValue::new(value),
            line,
            span: start..c.pos,
            interpolated,
        });
        c.next_line();
    }
    Ok(out)
}

/// Reads a quoted value starting at the opening quote; leaves the cursor after the closing one.
/// Returns the decoded value and whether a double-quoted value refers to another variable
/// through an unescaped `$` (`\$` is a literal `$`).
fn quoted(c: &mut Cursor<'_>, q: u8, line: usize) -> Result<(Vec<u8>, bool), SyntaxError> {
    let mut interp = false;
    c.pos += 1;
    let mut v = Vec::new();
    loop {
        let Some(b) = c.peek() else {
            return Err(c.err(
                line,
                format!(
                    "the {} quote opened here is never closed",
                    if q == b'"' { "double" } else { "single" }
                ),
            ));
        };
        c.pos += 1;
        if b == q {
            return Ok((v, interp));
        }
        if q == b'"' && b == b'$' && c.peek().is_some_and(starts_variable) {
            interp = true;
        }
        if b == b'\n' {
            c.line += 1;
        }
        if q == b'"' && b == b'\\' {
            let Some(e) = c.peek() else { continue };
            c.pos += 1;
            match e {
                b'n' => v.push(b'\n'),
                b'r' => v.push(b'\r'),
                b't' => v.push(b'\t'),
                b'"' | b'\\' | b'\'' | b'$' | b'`' => v.push(e),
                other => {
                    if other == b'\n' {
                        c.line += 1;
                    }
                    v.push(b'\\');
                    v.push(other);
                }
            }
            continue;
        }
        v.push(b);
    }
}

/// `${…}` or `$NAME` inside an unquoted value (which dotenv loaders expand).
fn refers_to_variable(v: &[u8]) -> bool {
    v.windows(2).any(|w| w[0] == b'$' && starts_variable(w[1]))
}

/// The byte after a `$` that makes it a variable reference: `{`, `_` or a letter.
fn starts_variable(b: u8) -> bool {
    b == b'{' || b == b'_' || b.is_ascii_alphabetic()
}

/// Writes `value` as a double-quoted `.env` value that [`parse`] reads back exactly (used by
/// the tests to generate files).
#[cfg(test)]
pub fn quote(value: &str) -> String {
    let mut s = String::from("\"");
    for ch in value.chars() {
        match ch {
            '"' => s.push_str("\\\""),
            '\\' => s.push_str("\\\\"),
            '$' => s.push_str("\\$"),
            '\r' => s.push_str("\\r"),
            '\t' => s.push_str("\\t"),
            c => s.push(c),
        }
    }
    s.push('"');
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn values(text: &str) -> Vec<(String, String, usize, bool)> {
        parse(text)
            .unwrap()
            .into_iter()
            .map(|e| {
                (
                    e.key,
                    String::from_utf8(e.value.expose_secret().to_vec()).unwrap(),
                    e.line,
                    e.interpolated,
                )
            })
            .collect()
    }

    /// `(key, value, line)` of each entry.
    type Want = &'static [(&'static str, &'static str, usize)];

    #[test]
    fn table_of_forms() {
        let cases: &[(&str, Want)] = &[
            ("A=1", &[("A", "1", 1)]),
            ("A=FAKE value  \n", &[("A", "FAKE value", 1)]),
            ("export A=x # c\n", &[("A", "x", 1)]),
            ("A = 'x#y' # c", &[("A", "x#y", 1)]),
            ("A=x#y", &[("A", "x#y", 1)]),
            (
                "A=\"a\\nb\\\"c\\\\d\\$e\\q\"",
                &[("A", "a\nb\"c\\d$e\\q", 1)],
            ),
            (
                "# c\n\nA=\"l1\nl2\"\nB='m1\nm2'\nC=3\n",
                &[("A", "l1\nl2", 3), ("B", "m1\nm2", 5), ("C", "3", 7)],
            ),
            ("A=\r\nB=x\r\n", &[("A", "", 1), ("B", "x", 2)]),
            ("  export\tA.b-c=  v  ", &[("A.b-c", "v", 1)]),
            ("A=''", &[("A", "", 1)]),
        ];
        for (text, want) in cases {
            let got = values(text);
            let got: Vec<_> = got
                .iter()
                .map(|(k, v, l, _)| (k.as_str(), v.as_str(), *l))
                .collect();
            assert_eq!(&got, want, "{text:?}");
        }
    }

    #[test]
    fn interpolation_is_marked() {
        let got = values("A=${B}\nC=\"x$D\"\nE='$F'\nG=a$\n");
        let marks: Vec<bool> = got.iter().map(|g| g.3).collect();
        assert_eq!(marks, [true, true, false, false]);
    }

    #[test]
    fn spans_cover_the_assignment_only() {
        let text = "  export A=\"x\"  # keep\nB=y\n";
        let e = parse(text).unwrap();
        assert_eq!(&text[e[0].span.clone()], "export A=\"x\"");
        assert_eq!(&text[e[1].span.clone()], "B=y");
    }

    #[test]
    fn only_unescaped_dollars_refer_to_variables() {
        for (text, interp) in [
            ("A=\"FAKE\\$HOME\"\n", false),
            ("A=\"FAKE\\${HOME}\"\n", false),
            ("A=\"FAKE$HOME\"\n", true),
            ("A=\"FAKE\\\\${HOME}\"\n", true),
            ("A='FAKE$HOME'\n", false),
            ("A=FAKE${HOME}\n", true),
        ] {
            let e = parse(text).unwrap();
            assert_eq!(e[0].interpolated, interp, "{text:?}");
        }
    }

    #[test]
    fn errors_name_the_line() {
        for (text, line, needle) in [
            (
                "A=1\n=2\n",
                2,
                "expected `KEY=value`, a comment or a blank line",
            ),
            ("A=1\nBFAKE\n", 2, "expected `KEY=value`"),
            ("A=1\nexport BFAKE # c\n", 2, "expected `KEY=value`"),
            (
                "A=1\n\nBFAKE=\"open\nstill",
                3,
                "the double quote opened here is never closed",
            ),
            ("AFAKE='x' y", 1, "unexpected text after the closing quote"),
        ] {
            let e = parse(text).unwrap_err();
            assert_eq!(e.line, line, "{text:?}");
            assert_eq!(e.message, needle, "{text:?}");
            // No text of the line is echoed: it may be a token.
            assert!(!e.message.contains("FAKE"), "{}", e.message);
        }
    }

    #[derive(Debug, Clone)]
    enum Line {
        Blank(String),
        Comment(String),
        Entry {
            export: bool,
            key: String,
            value: String,
            style: u8,
            comment: Option<String>,
        },
    }

    fn render(lines: &[Line]) -> String {
        let mut s = String::new();
        for l in lines {
            match l {
                Line::Blank(ws) => s.push_str(ws),
                Line::Comment(c) => {
                    s.push_str("# ");
                    s.push_str(c);
                }
                Line::Entry {
                    export,
                    key,
                    value,
                    style,
                    comment,
                } => {
                    if *export {
                        s.push_str("export ");
                    }
                    s.push_str(key);
                    s.push('=');
                    match style {
                        0 => s.push_str(value),
                        1 => {
                            s.push('\'');
                            s.push_str(value);
                            s.push('\'');
                        }
                        _ => s.push_str(&quote(value)),
                    }
                    if let Some(c) = comment {
                        s.push_str(" # ");
                        s.push_str(c);
                    }
                }
            }
            s.push('\n');
        }
        s
    }

    fn line() -> impl Strategy<Value = Line> {
        prop_oneof![
            "[ \t]{0,3}".prop_map(Line::Blank),
            "[ -~]{0,20}".prop_map(Line::Comment),
            (
                any::<bool>(),
                "[A-Za-z_][A-Za-z0-9_]{0,12}",
                // Every printable character, quotes, `#`, `$`, backslashes and newlines.
                "[ -~\n\t\u{e9}\u{2603}]{0,30}",
                0u8..3,
                proptest::option::of("[ -~]{0,10}"),
            )
                .prop_map(|(export, key, value, style, comment)| {
                    // Pick a style that can carry the value, as a user would.
                    let unquoted_ok = !value.is_empty()
                        && !value.contains(['\n', '"', '\'', '#', '$', '\t'])
                        && value.trim() == value;
                    let single_ok = !value.contains('\'');
                    let style = match style {
                        0 if unquoted_ok => 0,
                        1 if single_ok => 1,
                        _ => 2,
                    };
                    Line::Entry {
                        export,
                        key,
                        value,
                        style,
                        comment,
                    }
                }),
        ]
    }

    proptest! {
        #[test]
        fn parse_reads_back_what_was_written(lines in proptest::collection::vec(line(), 0..12)) {
            let text = render(&lines);
            let parsed = parse(&text).unwrap();
            let want: Vec<(&String, &String)> = lines
                .iter()
                .filter_map(|l| match l {
                    Line::Entry { key, value, .. } => Some((key, value)),
                    _ => None,
                })
                .collect();
            prop_assert_eq!(parsed.len(), want.len());
            for (e, (k, v)) in parsed.iter().zip(want) {
                prop_assert_eq!(&e.key, k);
                prop_assert_eq!(e.value.expose_secret(), v.as_bytes());
            }
            // Spans are ordered, disjoint and start at a key or `export`.
            for w in parsed.windows(2) {
                prop_assert!(w[0].span.end <= w[1].span.start);
            }
        }
    }
}
