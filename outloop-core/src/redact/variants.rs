//! The encoded forms of a secret that the redactor searches for.
//!
//! Every buffer here holds secret material, so each lives in a [`Zeroizing`] buffer sized
//! up front (no reallocation leaves a stray copy behind).

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE};
use zeroize::Zeroizing;

/// A derived form of a secret: its bytes, zeroized on drop.
pub(super) type Variant = Zeroizing<Vec<u8>>;

/// What kind of form a searched pattern is; decides how a match is replaced and reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Form {
    /// Raw, hex, percent, JSON or HTML text: replaced by the `[REDACTED:<label>]` tag.
    Text,
    /// A run of base64 alphabet characters (with `=` padding): replaced by a mask of the
    /// same length, so the surrounding payload stays decodable.
    Base64,
    /// The secret with its ASCII letters in any case (searched case-insensitively): replaced
    /// by the tag and reported as a case-folded match when no exact form hit the same run.
    Folded,
}

/// Every searchable form of `raw` with its kind, raw first, each at least `floor` bytes long.
///
/// The list may hold duplicates (for example hex and percent forms that equal the raw value
/// for some inputs); the caller deduplicates, keeping the first.
pub(super) fn forms(raw: &[u8], floor: usize) -> Vec<(Variant, Form)> {
    let mut out: Vec<(Variant, Form)> = variants(raw, floor)
        .into_iter()
        .map(|v| (v, Form::Text))
        .collect();
    // Base64 forms: of the secret, and of the secret with a trailing newline (`echo $TOKEN |
    // base64`). Forms holding `\/` stay text: masking them would change the decoded length.
    let mut b64 = Vec::new();
    base64_forms(raw, &mut b64);
    let mut nl = Zeroizing::new(Vec::with_capacity(raw.len() + 1));
    nl.extend_from_slice(raw);
    nl.push(b'\n');
    base64_forms(&nl, &mut b64);
    for v in b64 {
        if v.len() >= floor.max(1) {
            let form = if v.contains(&b'\\') {
                Form::Text
            } else {
                Form::Base64
            };
            out.push((v, form));
        }
    }
    out
}

/// The value searched for ignoring ASCII case, lowercased, when `raw` is [`foldable`]: an
/// upstream that upper-cases, lower-cases or otherwise re-cases a token still echoes it.
pub(super) fn folded(raw: &[u8]) -> Option<Variant> {
    foldable(raw).then(|| {
        let mut f = copy(raw);
        f.make_ascii_lowercase();
        f
    })
}

/// Whether a secret gets case-folded forms: ASCII letters and digits (and the token
/// separators `-`, `_`, `.`), with at least one letter.
pub(super) fn foldable(raw: &[u8]) -> bool {
    raw.iter().any(u8::is_ascii_alphabetic)
        && raw
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Every searchable text form of `raw` (everything but base64 and case folds), raw first,
/// each at least `floor` bytes long.
fn variants(raw: &[u8], floor: usize) -> Vec<Variant> {
    let mut out: Vec<Variant> = Vec::new();
    out.push(copy(raw));
    hex_forms(raw, &mut out);
    html_forms(raw, &mut out);
    html_numeric_forms(raw, &mut out);
    let mut percent = Vec::new();
    percent_forms(raw, &mut percent);
    // A percent form that keeps `"`, `\` or `/` raw is escaped again when it sits in a JSON
    // string (an upstream echoing its request URL in a JSON body).
    for form in &percent {
        if form.iter().any(|b| matches!(b, b'"' | b'\\' | b'/'))
            && let Ok(text) = std::str::from_utf8(form)
        {
            for slash in [false, true] {
                out.push(json_escape(
                    text,
                    JsonStyle {
                        slash,
                        ..JsonStyle::default()
                    },
                ));
            }
        }
    }
    out.extend(percent);
    json_forms(raw, &mut out);
    out.retain(|v| v.len() >= floor.max(1));
    out
}

/// HTML character references, as template engines and `html.escape` write them: the named
/// entities for `&`, `<`, `>`, `"` with `'` as `&#39;`, `&#x27;` or `&apos;`; and every
/// character that is not a letter or digit as a decimal `&#NN;` or hex `&#xNN;` reference.
/// Only for secrets holding one of those characters (otherwise the form is the raw value).
fn html_forms(raw: &[u8], out: &mut Vec<Variant>) {
    if !raw.iter().any(|b| b.is_ascii_punctuation() || *b == b' ') {
        return;
    }
    for apos in [&b"&#39;"[..], b"&#x27;", b"&apos;"] {
        let mut e = Zeroizing::new(Vec::with_capacity(raw.len() * 6));
        for &b in raw {
            match b {
                b'&' => e.extend_from_slice(b"&amp;"),
                b'<' => e.extend_from_slice(b"&lt;"),
                b'>' => e.extend_from_slice(b"&gt;"),
                b'"' => e.extend_from_slice(b"&quot;"),
                b'\'' => e.extend_from_slice(apos),
                _ => e.push(b),
            }
        }
        out.push(e);
    }
    for hex in [None, Some(HEX_LOWER), Some(HEX_UPPER)] {
        let mut e = Zeroizing::new(Vec::with_capacity(raw.len() * 7));
        for &b in raw {
            if b.is_ascii_alphanumeric() || !b.is_ascii() || b.is_ascii_control() {
                e.push(b);
                continue;
            }
            e.extend_from_slice(b"&#");
            match hex {
                None => {
                    if b >= 100 {
                        e.push(b'0' + b / 100);
                    }
                    e.push(b'0' + b / 10 % 10);
                    e.push(b'0' + b % 10);
                }
                Some(digits) => {
                    e.push(b'x');
                    e.push(digits[usize::from(b >> 4)]);
                    e.push(digits[usize::from(b & 0xf)]);
                }
            }
            e.push(b';');
        }
        out.push(e);
    }
}

/// A numeric character reference for `code`: decimal `&#NN;`, or hex `&#xNN;` / `&#XNN;`
/// with `digits`.
fn push_char_ref(e: &mut Vec<u8>, code: u32, style: HtmlRef) {
    e.extend_from_slice(b"&#");
    match style {
        HtmlRef::Decimal => {
            let mut buf = [0u8; 10];
            let mut n = code;
            let mut i = buf.len();
            loop {
                i -= 1;
                buf[i] = b'0' + (n % 10) as u8;
                n /= 10;
                if n == 0 {
                    break;
                }
            }
            e.extend_from_slice(&buf[i..]);
            buf.fill(0);
        }
        HtmlRef::Hex(x, digits) => {
            e.push(x);
            let width = (32 - code.leading_zeros()).div_ceil(4).max(2);
            for k in (0..width).rev() {
                e.push(digits[((code >> (4 * k)) & 0xf) as usize]);
            }
        }
    }
    e.push(b';');
}

/// How a numeric character reference is written.
#[derive(Clone, Copy)]
enum HtmlRef {
    Decimal,
    /// `x` or `X`, and the hex digits.
    Hex(u8, &'static [u8; 16]),
}

/// Numeric references beyond the uniform forms of [`html_forms`]: every character as a
/// reference, letters included (`&#70;&#65;…`, `&#x46;…`, `&#X46;…`); non-ASCII characters as
/// references of their code point (`&#233;`); and, as OWASP-style encoders escape some
/// punctuation and not the rest, every subset of the secret's distinct punctuation as
/// references, the rest raw (or as the named entity where HTML requires one).
fn html_numeric_forms(raw: &[u8], out: &mut Vec<Variant>) {
    let Ok(text) = std::str::from_utf8(raw) else {
        return;
    };
    let styles = [
        HtmlRef::Decimal,
        HtmlRef::Hex(b'x', HEX_LOWER),
        HtmlRef::Hex(b'x', HEX_UPPER),
        HtmlRef::Hex(b'X', HEX_UPPER),
    ];
    let build = |escape: &dyn Fn(char) -> bool, style: HtmlRef| {
        let mut e = Zeroizing::new(Vec::with_capacity(text.len() * 10));
        for c in text.chars() {
            if escape(c) {
                push_char_ref(&mut e, u32::from(c), style);
                continue;
            }
            match c {
                '&' => e.extend_from_slice(b"&amp;"),
                '<' => e.extend_from_slice(b"&lt;"),
                '>' => e.extend_from_slice(b"&gt;"),
                '"' => e.extend_from_slice(b"&quot;"),
                _ => {
                    let mut buf = [0u8; 4];
                    e.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                    buf.fill(0);
                }
            }
        }
        e
    };
    for style in styles {
        out.push(build(&|_| true, style));
        if !text.is_ascii() {
            out.push(build(&|c| !c.is_ascii_alphanumeric(), style));
            out.push(build(&|c| !c.is_ascii(), style));
        }
    }
    for escaped in escape_subsets(raw) {
        for style in styles {
            out.push(build(&|c| c.is_ascii() && escaped(c as u8), style));
        }
    }
}

fn copy(bytes: &[u8]) -> Variant {
    let mut v = Zeroizing::new(Vec::with_capacity(bytes.len()));
    v.extend_from_slice(bytes);
    v
}

/// Base64, standard and URL-safe alphabets, padded and unpadded, with the secret at byte
/// offset 0, 1 or 2 (mod 3) inside a longer encoded string.
///
/// At offset 1 the first two output characters also depend on the unknown preceding byte and
/// at offset 2 the first three do, so those are dropped. At the end, only the characters
/// fully determined by the secret are "stable" (a following byte changes the next one); the
/// stable run is registered, and so are the standalone endings (unpadded and padded) so a
/// secret that ends the encoded string is covered to its last character.
fn base64_forms(raw: &[u8], out: &mut Vec<Variant>) {
    for align in 0..3usize {
        let total = align + raw.len();
        let mut input = Zeroizing::new(Vec::with_capacity(total));
        input.resize(align, 0);
        input.extend_from_slice(raw);

        let skip = [0, 2, 3][align];
        let stable_end = total / 3 * 4 + total % 3;
        for engine in [&STANDARD, &URL_SAFE] {
            let Some(len) = base64::encoded_len(total, true) else {
                continue;
            };
            let mut enc = Zeroizing::new(vec![0u8; len]);
            let Ok(written) = engine.encode_slice(&*input, &mut enc[..]) else {
                continue;
            };
            enc.truncate(written);
            let unpadded = enc.iter().rposition(|&b| b != b'=').map_or(0, |i| i + 1);
            if stable_end > skip {
                out.push(copy(&enc[skip..stable_end]));
            }
            if unpadded > skip {
                out.push(copy(&enc[skip..unpadded]));
            }
            if written > skip {
                out.push(copy(&enc[skip..written]));
            }
        }
    }
    // Standard base64 holds `/`, which some JSON encoders (PHP) write as `\/`.
    let slashed: Vec<Variant> = out
        .iter()
        .filter(|v| v.contains(&b'/'))
        .map(|v| escape_slashes(v))
        .collect();
    out.extend(slashed);
}

fn escape_slashes(v: &[u8]) -> Variant {
    let mut e = Zeroizing::new(Vec::with_capacity(v.len() * 2));
    for &b in v {
        if b == b'/' {
            e.push(b'\\');
        }
        e.push(b);
    }
    e
}

const HEX_LOWER: &[u8; 16] = b"0123456789abcdef";
const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

/// Hex, lower and upper case.
fn hex_forms(raw: &[u8], out: &mut Vec<Variant>) {
    for digits in [HEX_LOWER, HEX_UPPER] {
        let mut e = Zeroizing::new(Vec::with_capacity(raw.len() * 2));
        for &b in raw {
            e.push(digits[usize::from(b >> 4)]);
            e.push(digits[usize::from(b & 0xf)]);
        }
        out.push(e);
    }
}

/// The most distinct optional bytes for which every raw/encoded combination is registered.
const MAX_OPTIONAL: usize = 6;

/// Whether every percent-encoder leaves `b` as it is: letters, digits, `-`, `.`, `_`.
fn always_kept(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_')
}

/// Whether some encoders keep `b` and others encode it: ASCII punctuation and space.
/// (Control characters and non-ASCII bytes are always encoded.)
fn optional(b: u8) -> bool {
    !always_kept(b) && (b.is_ascii_punctuation() || b == b' ')
}

/// The distinct [`optional`] bytes of `raw`, sorted.
fn optional_bytes(raw: &[u8]) -> Vec<u8> {
    let mut opt: Vec<u8> = raw.iter().copied().filter(|&b| optional(b)).collect();
    opt.sort_unstable();
    opt.dedup();
    opt
}

/// For a secret with at most [`MAX_OPTIONAL`] distinct [`optional`] bytes, every subset of
/// them, as a test "is this byte in the subset" (the empty subset first); for more, none.
fn escape_subsets(raw: &[u8]) -> Vec<Box<dyn Fn(u8) -> bool>> {
    let opt = optional_bytes(raw);
    if opt.is_empty() || opt.len() > MAX_OPTIONAL {
        return Vec::new();
    }
    (0u32..(1 << opt.len()))
        .map(|mask| {
            let opt = opt.clone();
            Box::new(move |b: u8| {
                opt.iter()
                    .position(|&o| o == b)
                    .is_some_and(|i| mask & (1 << i) != 0)
            }) as Box<dyn Fn(u8) -> bool>
        })
        .collect()
}

/// Percent-encoding as real encoders write it. Encoders disagree on which punctuation they
/// leave alone (RFC 3986 unreserved, WHATWG form, `encodeURIComponent`, Werkzeug and Python
/// `quote` with their own safe sets, servers that re-quote a URL), so for a secret with at most
/// [`MAX_OPTIONAL`] distinct punctuation bytes every raw/encoded combination is registered; for
/// more, the RFC 3986 and WHATWG form sets. Each form in either hex case, with space as `%20`
/// or `+`.
fn percent_forms(raw: &[u8], out: &mut Vec<Variant>) {
    let opt = optional_bytes(raw);
    let masks: Vec<Box<dyn Fn(u8) -> bool>> = if opt.len() <= MAX_OPTIONAL {
        (0u32..(1 << opt.len()))
            .map(|mask| {
                let opt = opt.clone();
                Box::new(move |b: u8| {
                    always_kept(b)
                        || opt
                            .iter()
                            .position(|&o| o == b)
                            .is_some_and(|i| mask & (1 << i) != 0)
                }) as Box<dyn Fn(u8) -> bool>
            })
            .collect()
    } else {
        vec![
            Box::new(|b: u8| always_kept(b) || b == b'~'),
            Box::new(|b: u8| always_kept(b) || b == b'*'),
        ]
    };
    // Some encoders escape every byte, letters included (`%46%41%4B%45…`).
    for digits in [HEX_UPPER, HEX_LOWER] {
        let mut e = Zeroizing::new(Vec::with_capacity(raw.len() * 3));
        for &b in raw {
            e.extend_from_slice(&[
                b'%',
                digits[usize::from(b >> 4)],
                digits[usize::from(b & 0xf)],
            ]);
        }
        out.push(e);
    }
    for keeps in &masks {
        for digits in [HEX_UPPER, HEX_LOWER] {
            for plus in [false, true] {
                if plus && !raw.contains(&b' ') {
                    continue;
                }
                let mut e = Zeroizing::new(Vec::with_capacity(raw.len() * 3));
                for &b in raw {
                    if plus && b == b' ' {
                        e.push(b'+');
                    } else if keeps(b) {
                        e.push(b);
                    } else {
                        e.extend_from_slice(&[
                            b'%',
                            digits[usize::from(b >> 4)],
                            digits[usize::from(b & 0xf)],
                        ]);
                    }
                }
                out.push(e);
            }
        }
    }
}

/// How a JSON encoder escapes a string, beyond what JSON requires.
#[derive(Clone, Copy, Default)]
struct JsonStyle {
    /// `/` as `\/` (PHP `json_encode`).
    slash: bool,
    /// `<`, `>`, `&` as `\u003c`, `\u003e`, `\u0026` (Go `encoding/json`).
    html: bool,
    /// Non-ASCII characters as `\uXXXX`, with surrogate pairs (Python `json.dumps`).
    ascii: bool,
    /// Every ASCII byte that is not alphanumeric as `\u00XX` in this hex alphabet.
    all: Option<&'static [u8; 16]>,
}

/// The secret as it appears inside a JSON string: serde_json's escaping, plus the common
/// variations of other encoders. Only values that are valid UTF-8 can appear in JSON text.
fn json_forms(raw: &[u8], out: &mut Vec<Variant>) {
    let Ok(text) = std::str::from_utf8(raw) else {
        return;
    };
    let styles = [
        JsonStyle::default(),
        JsonStyle {
            slash: true,
            ..JsonStyle::default()
        },
        JsonStyle {
            html: true,
            ..JsonStyle::default()
        },
        JsonStyle {
            ascii: true,
            ..JsonStyle::default()
        },
        JsonStyle {
            slash: true,
            ascii: true,
            ..JsonStyle::default()
        },
        JsonStyle {
            all: Some(HEX_LOWER),
            ..JsonStyle::default()
        },
        JsonStyle {
            all: Some(HEX_UPPER),
            ..JsonStyle::default()
        },
    ];
    for style in styles {
        out.push(json_escape(text, style));
    }
    // Non-ASCII as `\uXXXX` in upper-case hex (Jackson, .NET), and every character escaped,
    // letters included, in either hex case.
    if !text.is_ascii() {
        out.push(json_custom(text, &|_| false, HEX_UPPER, true));
    }
    for digits in [HEX_LOWER, HEX_UPPER] {
        out.push(json_custom(text, &|_| true, digits, true));
    }
    // Encoders that escape some punctuation and not the rest (.NET's System.Text.Json
    // escapes `+` as `\u002B` by default, others `'`, `=` or `/`): every subset of the
    // secret's distinct punctuation, as `\u00XX` in either hex case, non-ASCII raw or
    // escaped in the same case.
    for escaped in escape_subsets(raw) {
        for digits in [HEX_LOWER, HEX_UPPER] {
            for ascii in [false, true] {
                if ascii && text.is_ascii() {
                    continue;
                }
                out.push(json_custom(text, &|b| escaped(b), digits, ascii));
            }
        }
    }
}

/// `text` as a JSON string body with the ASCII bytes for which `escape` holds as `\u00XX`
/// (`digits` hex), JSON's required escapes (`\"`, `\\`, control characters) otherwise,
/// and non-ASCII characters as `\uXXXX` (surrogate pairs, `digits` hex) when `ascii`.
fn json_custom(text: &str, escape: &dyn Fn(u8) -> bool, digits: &[u8; 16], ascii: bool) -> Variant {
    let mut e = Zeroizing::new(Vec::with_capacity(text.len() * 6));
    let mut utf16 = [0u16; 2];
    for c in text.chars() {
        if c.is_ascii() {
            let b = c as u8;
            if escape(b) || b < b' ' {
                push_u_escape(&mut e, u16::from(b), digits);
            } else if b == b'"' || b == b'\\' {
                e.extend_from_slice(&[b'\\', b]);
            } else {
                e.push(b);
            }
        } else if ascii {
            for unit in c.encode_utf16(&mut utf16).iter() {
                push_u_escape(&mut e, *unit, digits);
            }
        } else {
            let mut buf = [0u8; 4];
            e.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            buf.fill(0);
        }
    }
    utf16.fill(0);
    e
}

fn json_escape(text: &str, style: JsonStyle) -> Variant {
    // At most 6 output bytes per input byte: `\u00XX` for one byte, or a surrogate pair
    // (12 bytes) for a 4-byte character.
    let mut e = Zeroizing::new(Vec::with_capacity(text.len() * 6));
    let mut utf16 = [0u16; 2];
    for c in text.chars() {
        let simple: Option<&[u8]> = match c {
            '"' => Some(b"\\\""),
            '\\' => Some(b"\\\\"),
            '\u{8}' => Some(b"\\b"),
            '\u{c}' => Some(b"\\f"),
            '\n' => Some(b"\\n"),
            '\r' => Some(b"\\r"),
            '\t' => Some(b"\\t"),
            '/' if style.slash => Some(b"\\/"),
            _ => None,
        };
        if let Some(digits) = style
            .all
            .filter(|_| c.is_ascii() && !c.is_ascii_alphanumeric())
        {
            push_u_escape(&mut e, c as u16, digits);
            continue;
        }
        if let Some(s) = simple {
            e.extend_from_slice(s);
        } else if c < ' ' || (style.html && matches!(c, '<' | '>' | '&')) {
            push_u_escape(&mut e, c as u16, HEX_LOWER);
        } else if style.ascii && !c.is_ascii() {
            for unit in c.encode_utf16(&mut utf16).iter() {
                push_u_escape(&mut e, *unit, HEX_LOWER);
            }
        } else {
            let mut buf = [0u8; 4];
            e.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            buf.fill(0);
        }
    }
    utf16.fill(0);
    e
}

fn push_u_escape(e: &mut Vec<u8>, unit: u16, digits: &[u8; 16]) {
    e.extend_from_slice(b"\\u");
    for shift in [12u16, 8, 4, 0] {
        e.push(digits[usize::from((unit >> shift) & 0xf)]);
    }
}

/// The parts of a multi-line or JSON secret that are registered on their own: each line
/// (trimmed; PEM `-----` armour lines skipped) and, when the value parses as JSON, each
/// string leaf (and that leaf's lines). The caller applies the floor and punctuation rules.
pub(super) fn parts(raw: &[u8]) -> Vec<Variant> {
    let mut out = Vec::new();
    lines(raw, &mut out);
    let trimmed = raw.trim_ascii_start();
    if (trimmed.starts_with(b"{") || trimmed.starts_with(b"["))
        && let Ok(mut value) = serde_json::from_slice::<serde_json::Value>(raw)
    {
        leaves(&mut value, &mut out);
    }
    out
}

fn lines(raw: &[u8], out: &mut Vec<Variant>) {
    if !raw.contains(&b'\n') {
        return;
    }
    for line in raw.split(|&b| b == b'\n') {
        let line = line.trim_ascii();
        if !line.is_empty() && !line.starts_with(b"-----") {
            out.push(copy(line));
        }
    }
}

/// Copies each string leaf out of `value` and zeroizes the copy `serde_json` made.
fn leaves(value: &mut serde_json::Value, out: &mut Vec<Variant>) {
    use serde_json::Value;
    match value {
        Value::String(s) => {
            out.push(copy(s.as_bytes()));
            lines(s.as_bytes(), out);
            zeroize::Zeroize::zeroize(s);
        }
        Value::Array(items) => items.iter_mut().for_each(|v| leaves(v, out)),
        Value::Object(map) => map.values_mut().for_each(|v| leaves(v, out)),
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}
