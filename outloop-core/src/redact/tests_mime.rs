//! Line-wrapped base64: a secret base64-encoded inside a MIME body (RFC 2045 §6.8: lines of
//! at most 76 characters, CRLF) or a PEM-style block (RFC 7468 §2: 64 columns, LF) is split
//! by line breaks at arbitrary offsets; the redactor treats those breaks as gaps (see
//! `gaps`, "Line-wrapped base64"), masks the encoded secret with its line breaks kept, and
//! leaves ordinary text with newlines alone.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::gaps::{LINE_RUN, Skeleton, base64_run_after};
use super::tests::{check, redactor};
use super::*;

const SECRET: &[u8] = b"FAKE-wrapped-secret-7d1e";

/// `text` cut into lines of `width` characters, each ended by `eol` (the last one too).
fn wrap(text: &[u8], width: usize, eol: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for line in text.chunks(width) {
        out.extend_from_slice(line);
        out.extend_from_slice(eol);
    }
    out
}

/// The payload of a wrapped-base64 case: `before` bytes, the secret, then a tail.
fn payload(before: usize, secret: &[u8]) -> Vec<u8> {
    let mut p: Vec<u8> = (0..before).map(|i| b"FAKE filler text. "[i % 18]).collect();
    p.extend_from_slice(secret);
    p.extend_from_slice(b" and some more FAKE filler after it, long enough for a few lines.");
    p
}

/// Runs one wrapped case through [`check`] (whole buffer, 1-byte stream, every two-piece
/// split, idempotence). The expected output is built independently of the line handling:
/// the unwrapped encoding redacted (the plain base64 forms, tested elsewhere), wrapped the
/// same way. Then checks that the output still decodes to the payload's length and holds
/// no trace of the secret.
fn check_wrapped(kind: &str, head: &[u8], tail: &[u8], width: usize, eol: &[u8], before: usize) {
    let secret = if kind.contains("long") {
        // 3 × 24 bytes: its encoding (96 characters) spans two or three line breaks.
        [SECRET, SECRET, SECRET].concat()
    } else {
        SECRET.to_vec()
    };
    let r = redactor(&[("m", &secret)]);
    let encoded = STANDARD.encode(payload(before, &secret));
    let flat = r.redact(encoded.as_bytes());
    assert_eq!(
        flat.count, 1,
        "{kind} @{before}: the unwrapped form is found"
    );
    let input = [head, &wrap(encoded.as_bytes(), width, eol), tail].concat();
    let expected = [head, &wrap(&flat.output, width, eol), tail].concat();
    let name = format!("{kind} @{before}");
    check(&r, &name, &input, &expected, 1);

    let body = &expected[head.len()..expected.len() - tail.len()];
    let joined: Vec<u8> = body
        .iter()
        .copied()
        .filter(|b| !matches!(b, b'\r' | b'\n'))
        .collect();
    let decoded = STANDARD
        .decode(&joined)
        .unwrap_or_else(|e| panic!("{name}: the masked payload no longer decodes: {e}"));
    assert_eq!(decoded.len(), payload(before, &secret).len(), "{name}");
    assert!(
        !decoded
            .windows(secret.len())
            .any(|w| w == secret.as_slice()),
        "{name}: the secret survives decoding"
    );
    // The lines keep their width and their breaks.
    let lines: Vec<&[u8]> = body.split(|&b| b == b'\n').collect();
    let cr = usize::from(eol == b"\r\n");
    for line in &lines[..lines.len() - 2] {
        assert_eq!(line.len(), width + cr, "{name}: a line changed width");
    }
}

#[test]
fn mime_crlf_76_columns_at_several_offsets() {
    let head =
        b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n";
    let tail = b"--FAKE-boundary--\r\n";
    // Offsets put the secret's encoding across the first line break at different columns.
    for before in [0, 1, 2, 30, 41, 47, 50, 53, 54, 55, 56, 57, 60, 100] {
        check_wrapped("mime_crlf_76", head, tail, 76, b"\r\n", before);
    }
    for before in [0, 40, 57] {
        check_wrapped("mime_crlf_76_long", head, tail, 76, b"\r\n", before);
    }
}

#[test]
fn pem_lf_64_columns_at_several_offsets() {
    let head = b"-----BEGIN FAKE DATA-----\n";
    let tail = b"-----END FAKE DATA-----\n";
    for before in [0, 1, 2, 20, 30, 35, 40, 41, 42, 45, 48, 90] {
        check_wrapped("pem_lf_64", head, tail, 64, b"\n", before);
    }
    for before in [0, 31, 47] {
        check_wrapped("pem_lf_64_long", head, tail, 64, b"\n", before);
    }
}

/// The same rules, with the exact output written out: the mask keeps the line break.
#[test]
fn wrapped_base64_exact_output() {
    let r = redactor(&[("m", SECRET)]);
    // base64("0123456789abcdefghijklmnopqrstu" + SECRET + "!") is
    // "MDEyMzQ1Njc4OWFiY2RlZmdoaWprbG1ub3BxcnN0dUZBS0Ut" "d3JhcHBlZC1zZWNyZXQtN2QxZSE="
    // cut after 48 characters. Bytes 31..55 are the secret: characters 42..73 encode only
    // secret bits (its stable interior), so they are masked, across the break, and the
    // break stays; `dU` and `SE=` carry bits of the bytes around it and stay too.
    let cases: &[(&str, &[u8], &[u8])] = &[
        (
            "lf_after_48",
            b"MDEyMzQ1Njc4OWFiY2RlZmdoaWprbG1ub3BxcnN0dUZBS0Ut\nd3JhcHBlZC1zZWNyZXQtN2QxZSE=\n",
            b"MDEyMzQ1Njc4OWFiY2RlZmdoaWprbG1ub3BxcnN0dUREDACT\nEDREDACTEDREDACTEDREDACTESE=\n",
        ),
        (
            "crlf_after_48",
            b"MDEyMzQ1Njc4OWFiY2RlZmdoaWprbG1ub3BxcnN0dUZBS0Ut\r\nd3JhcHBlZC1zZWNyZXQtN2QxZSE=\r\n",
            b"MDEyMzQ1Njc4OWFiY2RlZmdoaWprbG1ub3BxcnN0dUREDACT\r\nEDREDACTEDREDACTEDREDACTESE=\r\n",
        ),
    ];
    for (name, input, expected) in cases {
        check(&r, name, input, expected, 1);
    }
}

/// Which line breaks are gaps: the skeleton (the haystack with gaps removed), or `None`.
#[test]
fn line_gap_rules() {
    let b40 = "QUJD".repeat(10); // 40 base64 characters
    let b39 = &b40[..39];
    let cases: Vec<(&str, String, usize, Option<String>)> = vec![
        (
            "crlf_after_40",
            format!("{b40}\r\nXYZ"),
            0,
            Some(format!("{b40}XYZ")),
        ),
        (
            "lf_after_40",
            format!("{b40}\nXYZ"),
            0,
            Some(format!("{b40}XYZ")),
        ),
        (
            "text_before_the_run",
            format!("key: {b40}\nXYZ"),
            0,
            Some(format!("key: {b40}XYZ")),
        ),
        ("after_39", format!("{b39}\nXYZ"), 0, None),
        (
            "after_39_with_1_before",
            format!("{b39}\nXYZ"),
            1,
            Some(format!("{b39}XYZ")),
        ),
        (
            "space_in_the_run",
            format!("{} {}\nXYZ", &b40[..20], &b40[..20]),
            0,
            None,
        ),
        ("padding_ends_the_run", format!("{b40}=\nXYZ"), 0, None),
        ("next_is_not_base64", format!("{b40}\n-XYZ"), 0, None),
        ("next_is_a_blank_line", format!("{b40}\n\nXYZ"), 0, None),
        ("lone_cr_inside", format!("{b40}\rXYZ"), 0, None),
        (
            "incomplete_cr_at_end",
            format!("{b40}\r"),
            0,
            Some(b40.clone()),
        ),
        (
            "incomplete_crlf_at_end",
            format!("{b40}\r\n"),
            0,
            Some(b40.clone()),
        ),
        (
            "incomplete_lf_at_end",
            format!("{b40}\n"),
            0,
            Some(b40.clone()),
        ),
        (
            "two_lines",
            format!("{b40}\n{b40}\nXYZ"),
            0,
            Some(format!("{b40}{b40}XYZ")),
        ),
        (
            "short_last_line_then_text",
            format!("{b40}\nAB\nnext"),
            0,
            Some(format!("{b40}AB\nnext")),
        ),
        (
            "with_an_ansi_gap_too",
            format!("{b40}\n\x1b[1mXYZ\n{b40}\x1b[0m\nXYZ"),
            0,
            // Colour codes are gaps, but a break stays when the byte after it is not base64,
            // or the bytes before it (raw, codes included) are not a 40-character run.
            Some(format!("{b40}\nXYZ\n{b40}\nXYZ")),
        ),
    ];
    let mut wrong = Vec::new();
    for (name, hay, before, want) in cases {
        let got = Skeleton::build_after(hay.as_bytes(), before).map(|sk| {
            let all: Vec<u8> = sk
                .segments()
                .iter()
                .flat_map(|s| sk.bytes(s.clone()).to_vec())
                .collect();
            String::from_utf8(all).unwrap()
        });
        if got != want {
            wrong.push(format!("{name}: got {got:?} want {want:?}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn base64_run_carries_across_released_input() {
    let cases: &[(&str, usize, &[u8], usize)] = &[
        ("empty_keeps", 7, b"", 7),
        ("all_base64_adds", 7, b"QUJD", 11),
        ("capped", 39, b"QUJDQUJD", LINE_RUN),
        ("space_resets", 30, b"QU JD", 2),
        ("newline_resets", 30, b"QUJD\n", 0),
        ("padding_resets", 30, b"QUJD=", 0),
    ];
    for (name, before, passed, want) in cases {
        assert_eq!(base64_run_after(*before, passed), *want, "{name}");
    }
}

/// Realistic text with newlines: pretty JSON, log lines, prose, a short base64 line, and
/// 40 base64 characters followed by a non-base64 line. None builds a skeleton (the fast
/// path), and none changes.
#[test]
fn ordinary_text_with_newlines_is_unchanged_and_builds_no_skeleton() {
    let hex_id = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
    let samples: Vec<(&str, String)> = vec![
        (
            "pretty_json",
            format!(
                "{{\n  \"id\": \"{hex_id}\",\n  \"name\": \"FAKE Corp\",\n  \"tags\": [\n    \"a\",\n    \"b\"\n  ]\n}}\n"
            ),
        ),
        (
            "log_lines",
            format!(
                "2026-11-30T09:00:00Z INFO request id={hex_id} status=200\n2026-11-30T09:00:01Z WARN slow upstream duration_ms=1234\n"
            ),
        ),
        (
            "prose",
            "Hello,\nthis is a FAKE message\nwith several lines.\n\nRegards\n".into(),
        ),
        ("short_base64_lines", "QUJDREVG\nR0hJSktM\n".into()),
        (
            "hex_then_a_json_line",
            format!("{hex_id}\n{{\"next\": 1}}\n"),
        ),
        (
            "run_then_padding",
            format!("{}==\nQUJD\n", "QUJD".repeat(12)),
        ),
    ];
    let r = redactor(&[("m", SECRET)]);
    for (name, text) in &samples {
        assert!(
            Skeleton::build(text.as_bytes()).is_none(),
            "{name}: built a skeleton"
        );
        check(&r, name, text.as_bytes(), text.as_bytes(), 0);
    }
    // A larger mix, 1 MiB, builds none either; nor does any 4 KiB window of it, except one
    // that ends right after a 40-character run and its line break (an incomplete break: a
    // stream must hold the run back until it sees the next byte).
    let mut big = String::new();
    while big.len() < 1 << 20 {
        for (_, text) in &samples[..5] {
            big.push_str(text);
        }
    }
    assert!(Skeleton::build(big.as_bytes()).is_none());
    let built: Vec<usize> = big
        .as_bytes()
        .chunks(4096)
        .enumerate()
        .filter(|(_, c)| Skeleton::build(c).is_some())
        .map(|(i, c)| {
            assert!(
                c.ends_with(format!("{hex_id}\n").as_bytes()),
                "window {i} built a skeleton"
            );
            i
        })
        .collect();
    assert!(built.len() <= 2, "{} windows built a skeleton", built.len());
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 64, ..Default::default() })]

    /// Random secrets at random offsets of a random payload, base64-encoded and wrapped at
    /// 76/CRLF or 64/LF, streamed in random chunks: the stream equals the whole buffer, the
    /// lines keep their breaks, the payload decodes to its length, and the secret is gone.
    #[test]
    fn prop_wrapped_base64_never_survives(
        secret in "[A-Za-z0-9_.-]{8,40}",
        before in 0usize..200,
        after in 0usize..120,
        pem in proptest::prelude::any::<bool>(),
        cuts in proptest::collection::vec(1usize..100, 1..8),
    ) {
        let secret = format!("FAKE{secret}").into_bytes();
        let r = redactor(&[("m", &secret)]);
        let mut plain: Vec<u8> = (0..before).map(|i| b"FAKE pad, "[i % 10]).collect();
        plain.extend_from_slice(&secret);
        plain.extend((0..after).map(|i| b"; tail FAKE"[i % 11]));
        let (width, eol): (usize, &[u8]) = if pem { (64, b"\n") } else { (76, b"\r\n") };
        let input = wrap(STANDARD.encode(&plain).as_bytes(), width, eol);

        let whole = r.redact(&input);
        let mut s = r.stream();
        let mut out = Vec::new();
        let (mut pos, mut i) = (0, 0);
        while pos < input.len() {
            let end = (pos + cuts[i % cuts.len()]).min(input.len());
            s.push(&input[pos..end], &mut out);
            pos = end;
            i += 1;
        }
        s.finish(&mut out);
        proptest::prop_assert_eq!(&out, &whole.output);
        proptest::prop_assert_eq!(whole.count, 1);
        proptest::prop_assert_eq!(out.len(), input.len());
        let breaks = |b: &[u8]| b.iter().enumerate().filter(|(_, c)| matches!(c, b'\r' | b'\n')).map(|(i, _)| i).collect::<Vec<_>>();
        proptest::prop_assert_eq!(breaks(&out), breaks(&input));
        let joined: Vec<u8> = out.iter().copied().filter(|b| !matches!(b, b'\r' | b'\n')).collect();
        let decoded = STANDARD.decode(&joined).expect("still decodes");
        proptest::prop_assert_eq!(decoded.len(), plain.len());
        proptest::prop_assert!(!decoded.windows(secret.len()).any(|w| w == secret.as_slice()));
        proptest::prop_assert_eq!(r.redact(&out).output, out);
    }
}
