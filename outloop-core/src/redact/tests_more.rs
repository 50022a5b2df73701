//! Table tests of the forms and rules added for full-strength redaction (HTML entities,
//! trailing-newline base64, case folds, gaps, multi-line secrets, JSON keys, base64 masks,
//! rotation, canaries), the async reader and writer, and property tests over them.

use std::time::{Duration, SystemTime};

use base64::Engine as _;
use proptest::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::tests::{check, redactor, stream_in_chunks};
use super::*;

#[test]
fn html_entities() {
    let r = redactor(&[("h", b"FAKE<&>\"'html")]);
    let cases: &[(&str, &[u8])] = &[
        (
            "html_named_apos_decimal",
            b"FAKE&lt;&amp;&gt;&quot;&#39;html",
        ),
        ("html_named_apos_hex", b"FAKE&lt;&amp;&gt;&quot;&#x27;html"),
        (
            "html_named_apos_named",
            b"FAKE&lt;&amp;&gt;&quot;&apos;html",
        ),
        ("html_numeric_decimal", b"FAKE&#60;&#38;&#62;&#34;&#39;html"),
        (
            "html_numeric_hex_lower",
            b"FAKE&#x3c;&#x26;&#x3e;&#x22;&#x27;html",
        ),
        (
            "html_numeric_hex_upper",
            b"FAKE&#x3C;&#x26;&#x3E;&#x22;&#x27;html",
        ),
    ];
    for (name, form) in cases {
        let mut input = b"<p>".to_vec();
        input.extend_from_slice(form);
        input.extend_from_slice(b"</p>");
        check(&r, name, &input, b"<p>[REDACTED:h]</p>", 1);
    }
}

#[test]
fn base64_of_the_secret_with_a_trailing_newline() {
    let r = redactor(&[("n", b"FAKE-nl-secret-42")]);
    // base64("FAKE-nl-secret-42\n"): without the newline form, the last two characters
    // (which encode "2\n") would survive.
    check(
        &r,
        "base64_trailing_newline",
        b"auth RkFLRS1ubC1zZWNyZXQtNDIK end",
        b"auth REDACTEDREDACTEDREDACTED end",
        1,
    );
}

#[test]
fn case_folded_forms_are_redacted_and_reported() {
    let r = redactor(&[("c", b"FAKEtokenAbc123")]);
    /// Name, input, expected output, replacements, case-folded-only replacements.
    type Case<'a> = (&'a str, &'a [u8], &'a [u8], usize, usize);
    let cases: &[Case] = &[
        (
            "folded_lower",
            b"x faketokenabc123 y",
            b"x [REDACTED:c] y",
            1,
            1,
        ),
        (
            "folded_upper",
            b"x FAKETOKENABC123 y",
            b"x [REDACTED:c] y",
            1,
            1,
        ),
        (
            "folded_exact_not_reported",
            b"x FAKEtokenAbc123 y",
            b"x [REDACTED:c] y",
            1,
            0,
        ),
        (
            "folded_one_of_two",
            b"FAKEtokenAbc123 faketokenabc123",
            b"[REDACTED:c] [REDACTED:c]",
            2,
            1,
        ),
        (
            "folded_mixed_case",
            b"fakeTOKENabc123",
            b"[REDACTED:c]",
            1,
            1,
        ),
        (
            "folded_alternating_case_in_json",
            b"{\"k\": \"fAkEtOkEnAbC123\"}",
            b"{\"k\": \"[REDACTED:c]\"}",
            1,
            1,
        ),
        (
            "folded_overlapping_exact_and_mixed",
            b"FAKEtokenAbc123fakeTOKENabc123",
            b"[REDACTED:c][REDACTED:c]",
            2,
            1,
        ),
        (
            "folded_one_letter_short_not_matched",
            b"faketokenabc12",
            b"faketokenabc12",
            0,
            0,
        ),
    ];
    for (name, input, expected, count, folded) in cases {
        check(&r, name, input, expected, *count);
        assert_eq!(r.redact(input).folded, *folded, "case {name}: folded");
        let mut s = r.stream_session();
        let mut out = Vec::new();
        for b in input.iter() {
            s.push(&[*b], &mut out);
        }
        s.finish(&mut out);
        assert_eq!(s.findings().folded, *folded, "case {name}: stream folded");
    }
    // Secrets with other punctuation get no folded forms.
    let r = redactor(&[("p", b"FAKE~token~abc")]);
    check(
        &r,
        "folded_not_for_punctuation",
        b"fake~token~abc",
        b"fake~token~abc",
        0,
    );
}

#[test]
fn gaps_inside_a_secret() {
    let r = redactor(&[("t", b"FAKE-token-123")]);
    let long_gap = [0u8; 40];
    let mut over_long = b"FAKE-to".to_vec();
    over_long.extend_from_slice(&long_gap);
    over_long.extend_from_slice(b"ken-123");
    let cases: &[(&str, &[u8], &[u8], usize)] = &[
        (
            "gap_ansi_colour",
            b"a FAKE-\x1b[31mtoken\x1b[0m-123 b",
            b"a [REDACTED:t] b",
            1,
        ),
        (
            "gap_ansi_bold_around_kept",
            b"\x1b[1mFAKE-token-123\x1b[0m",
            b"\x1b[1m[REDACTED:t]\x1b[0m",
            1,
        ),
        (
            "gap_zero_width_space",
            "FAKE-to\u{200b}ken-123".as_bytes(),
            b"[REDACTED:t]",
            1,
        ),
        (
            "gap_zero_width_joiner",
            "F\u{200d}AKE-token-12\u{200c}3".as_bytes(),
            b"[REDACTED:t]",
            1,
        ),
        (
            "gap_bom",
            "FAKE-token\u{feff}-123".as_bytes(),
            b"[REDACTED:t]",
            1,
        ),
        (
            "gap_nul_and_bel",
            b"FAKE\x00-token\x07-123",
            b"[REDACTED:t]",
            1,
        ),
        ("gap_del", b"FAKE-tok\x7fen-123", b"[REDACTED:t]", 1),
        (
            "gap_stacked",
            b"FAKE-\x1b[1;31m\x00\xe2\x80\x8btoken-123",
            b"[REDACTED:t]",
            1,
        ),
        (
            "gap_newline_is_not_a_gap",
            b"FAKE-tok\nen-123",
            b"FAKE-tok\nen-123",
            0,
        ),
        ("gap_over_long_run_breaks", &over_long, &over_long, 0),
        (
            "gap_lone_gaps_kept",
            b"\x00\x1b[0m\xe2\x80\x8b text",
            b"\x00\x1b[0m\xe2\x80\x8b text",
            0,
        ),
        (
            "gap_other_utf8_kept",
            "FAKE-to\u{2014}ken-123 \u{2019}".as_bytes(),
            "FAKE-to\u{2014}ken-123 \u{2019}".as_bytes(),
            0,
        ),
    ];
    for (name, input, expected, count) in cases {
        check(&r, name, input, expected, *count);
    }
}

#[test]
fn multi_line_secrets_register_lines_and_json_leaves() {
    let pem: &[u8] = b"-----BEGIN FAKE TEST KEY-----\nMIIEFAKEline1AAAAAAAA\r\nMIIEFAKEline2BBBBBBBB\n-----END FAKE TEST KEY-----\n";
    let key_file: &[u8] = br#"{"type":"service_account","private_key_id":"FAKEkeyid0123456","private_key":"-----BEGIN FAKE KEY-----\nMIIEFAKEjsonline3CCCC\n-----END FAKE KEY-----\n","n":12345678901}"#;
    let r = redactor(&[("pem", pem), ("gcp", key_file)]);
    let cases: &[(&str, &[u8], &[u8], usize)] = &[
        ("multiline_pem_whole", pem, b"[REDACTED:pem]", 1),
        (
            "multiline_pem_one_line",
            b"got MIIEFAKEline2BBBBBBBB.",
            b"got [REDACTED:pem].",
            1,
        ),
        (
            "multiline_pem_armour_not_registered",
            b"-----BEGIN FAKE TEST KEY-----",
            b"-----BEGIN FAKE TEST KEY-----",
            0,
        ),
        (
            "multiline_json_leaf",
            b"id=FAKEkeyid0123456",
            b"id=[REDACTED:gcp]",
            1,
        ),
        (
            "multiline_json_leaf_line",
            b"MIIEFAKEjsonline3CCCC",
            b"[REDACTED:gcp]",
            1,
        ),
        (
            "multiline_json_leaf_type",
            b"\"service_account\"",
            b"\"[REDACTED:gcp]\"",
            1,
        ),
        (
            "multiline_json_number_not_a_leaf",
            b"12345678901",
            b"12345678901",
            0,
        ),
    ];
    for (name, input, expected, count) in cases {
        check(&r, name, input, expected, *count);
    }
}

#[test]
fn secret_as_a_json_key_gets_a_numbered_tag() {
    let r = redactor(&[("k", b"FAKE-key-aaaa"), ("k", b"FAKE-key-bbbb")]);
    let cases: &[(&str, &[u8], &[u8], usize)] = &[
        (
            "json_key_two_keys_stay_distinct",
            br#"{"FAKE-key-aaaa":1,"FAKE-key-bbbb":2}"#,
            br#"{"[REDACTED:k#1]":1,"[REDACTED:k#2]":2}"#,
            2,
        ),
        (
            "json_key_pretty_printed",
            b"{\n  \"FAKE-key-aaaa\": 1,\n  \"FAKE-key-bbbb\": 2\n}",
            b"{\n  \"[REDACTED:k#1]\": 1,\n  \"[REDACTED:k#2]\": 2\n}",
            2,
        ),
        (
            "json_value_not_numbered",
            br#"{"a":"FAKE-key-aaaa","b":"FAKE-key-bbbb"}"#,
            br#"{"a":"[REDACTED:k]","b":"[REDACTED:k]"}"#,
            2,
        ),
        (
            "json_array_element_numbered",
            br#"["FAKE-key-aaaa","FAKE-key-aaaa"]"#,
            br#"["[REDACTED:k]","[REDACTED:k#1]"]"#,
            2,
        ),
    ];
    for (name, input, expected, count) in cases {
        check(&r, name, input, expected, *count);
        let out: serde_json::Value =
            serde_json::from_slice(&r.redact(input).output).expect("output is still JSON");
        let inp: serde_json::Value = serde_json::from_slice(input).expect("input is JSON");
        if let (Some(a), Some(b)) = (out.as_object(), inp.as_object()) {
            assert_eq!(a.len(), b.len(), "case {name}: no keys merged");
        }
    }
}

#[test]
fn labels_are_safe_inside_json_strings() {
    let r = redactor(&[("we\"ird\\label <x>#1", b"FAKE-label-secret")]);
    let out = r.redact(br#"{"v":"FAKE-label-secret"}"#).output;
    assert_eq!(out, br#"{"v":"[REDACTED:we_ird_label__x__1]"}"#);
    serde_json::from_slice::<serde_json::Value>(&out).expect("valid JSON");
}

#[test]
fn base64_payload_stays_decodable() {
    let secret = b"FAKE-nl-secret-42";
    let r = redactor(&[("n", secret)]);
    for prefix in [&b"{\"token\":\""[..], b"{\"tok\":\"", b"{\"t\":\""] {
        let mut plain = prefix.to_vec();
        plain.extend_from_slice(secret);
        plain.extend_from_slice(b"\",\"n\":1}");
        for engine in [
            &base64::engine::general_purpose::STANDARD,
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        ] {
            let encoded = engine.encode(&plain);
            let out = r.redact(encoded.as_bytes());
            assert_eq!(out.count, 1);
            assert_eq!(out.output.len(), encoded.len(), "same length");
            assert!(
                out.output.windows(8).any(|w| w == b"REDACTED"),
                "mask visible"
            );
            let decoded = engine.decode(&out.output).expect("still decodable");
            assert_eq!(decoded.len(), plain.len());
            assert!(!decoded.windows(secret.len()).any(|w| w == secret));
        }
    }
}

#[test]
fn rotated_secret_is_redacted_during_its_grace_period() {
    let mut b = RedactorBuilder::new();
    let old = SecretValue::new(b"FAKE-old-rotated-1".to_vec());
    let gone = SecretValue::new(b"FAKE-older-expired".to_vec());
    let now = SystemTime::now();
    assert!(
        b.add_rotated("k", &old, now + Duration::from_secs(60))
            .expect("valid")
    );
    assert!(
        !b.add_rotated("k", &gone, now - Duration::from_secs(1))
            .expect("valid")
    );
    let r = b.build();
    check(
        &r,
        "rotated_in_grace",
        b"FAKE-old-rotated-1",
        b"[REDACTED:k]",
        1,
    );
    check(
        &r,
        "rotated_expired",
        b"FAKE-older-expired",
        b"FAKE-older-expired",
        0,
    );
}

#[test]
fn canary_is_redacted_and_reported() {
    let mut b = RedactorBuilder::new();
    b.add("hubspot", &SecretValue::new(b"FAKE-real-token-1".to_vec()))
        .expect("valid");
    b.add_canary(
        "acme",
        "hubspot",
        &SecretValue::new(b"FAKE-canary-acme".to_vec()),
    )
    .expect("valid");
    b.add_canary(
        "globex",
        "stripe",
        &SecretValue::new(b"FAKE-canary-globex".to_vec()),
    )
    .expect("valid");
    let r = b.build();
    check(
        &r,
        "canary",
        b"x FAKE-canary-acme y",
        b"x [REDACTED:hubspot] y",
        1,
    );
    assert_eq!(r.redact(b"x FAKE-canary-acme y").canaries, ["acme"]);
    assert!(r.redact(b"FAKE-real-token-1").canaries.is_empty());
    let both = r.redact(b"FAKE-canary-globex FAKE-canary-acme FAKE-canary-acme");
    assert_eq!(both.canaries, ["acme", "globex"]);
    let mut s = r.stream();
    let mut out = Vec::new();
    s.push(b"FAKE-cana", &mut out);
    assert!(s.findings().canaries.is_empty());
    s.push(b"ry-globex!", &mut out);
    s.finish(&mut out);
    assert_eq!(out, b"[REDACTED:stripe]!");
    assert_eq!(s.findings().canaries, ["globex"]);
    let debug = format!("{b:?} {r:?} {both:?}", b = RedactorBuilder::new());
    assert!(!debug.contains("FAKE-canary"));
}

#[test]
fn new_types_debug_prints_no_secret() {
    let r = redactor(&[("t", b"FAKE-debug-secret")]);
    let mut s = r.stream_session();
    let mut out = Vec::new();
    s.push(b"FAKE-debug-sec", &mut out);
    let reader = RedactReader::new(&r, &b"FAKE-debug-secret"[..]);
    let writer = RedactWriter::new(&r, Vec::new());
    let text = format!("{s:?} {reader:?} {writer:?} {:?}", s.findings());
    assert!(!text.contains("FAKE-debug"), "{text}");
    assert!(!text.contains("debug-sec"), "{text}");
}

/// A long input: filler, then the secret straddling byte `boundary` with `before` bytes
/// of it before the boundary, then filler with a split two-byte character and invalid UTF-8.
fn straddling(secret: &[u8], boundary: usize, before: usize) -> (Vec<u8>, Vec<u8>) {
    let mut input = vec![b'.'; boundary - before];
    input.extend_from_slice(secret);
    let mut tail = "é tail \u{1F600} ".as_bytes().to_vec();
    tail.extend_from_slice(&[0xff, 0xc3, b'\n']);
    input.extend_from_slice(&tail);
    let mut expected = vec![b'.'; boundary - before];
    expected.extend_from_slice(b"[REDACTED:t]");
    expected.extend_from_slice(&tail);
    (input, expected)
}

#[tokio::test]
async fn reader_every_split_offset_across_4096_8192_65536_byte_reads() {
    let secret: &[u8] = b"FAKE-reader-secret";
    let r = redactor(&[("t", secret)]);
    for size in [4096usize, 8192, 65536] {
        for before in 0..=secret.len() {
            let (input, expected) = straddling(secret, size, before);
            let mut reader = RedactReader::with_chunk_size(&r, input.as_slice(), size);
            let mut out = Vec::new();
            reader.read_to_end(&mut out).await.expect("reads");
            assert!(
                out == expected,
                "size {size}, {before} bytes before the boundary"
            );
            assert_eq!(reader.findings().count, 1);
        }
    }
}

#[tokio::test]
async fn reader_releases_the_tail_at_eof_never_verbatim() {
    let r = redactor(&[("t", b"FAKE-reader-secret")]);
    let mut out = Vec::new();
    RedactReader::with_chunk_size(&r, &b"abc FAKE-reader-secret"[..], 7)
        .read_to_end(&mut out)
        .await
        .expect("reads");
    assert_eq!(out, b"abc [REDACTED:t]");
    // A secret prefix left at EOF is not a secret: it comes out as it was.
    let mut out = Vec::new();
    RedactReader::with_chunk_size(&r, &b"abc FAKE-reader-sec"[..], 5)
        .read_to_end(&mut out)
        .await
        .expect("reads");
    assert_eq!(out, b"abc FAKE-reader-sec");
}

#[tokio::test]
async fn writer_every_split_offset_across_two_writes() {
    let secret: &[u8] = b"FAKE-writer-secret";
    let r = redactor(&[("t", secret)]);
    let input: Vec<u8> = [
        &b"\xffbefore \xc3"[..],
        b"\xa9 ",
        secret,
        b" after \xe2\x82",
    ]
    .concat();
    let expected: Vec<u8> = [
        &b"\xffbefore \xc3"[..],
        b"\xa9 ",
        b"[REDACTED:t]",
        b" after \xe2\x82",
    ]
    .concat();
    for split in 0..=input.len() {
        let mut w = RedactWriter::new(&r, Vec::new());
        w.write_all(&input[..split]).await.expect("write");
        w.write_all(&input[split..]).await.expect("write");
        w.flush().await.expect("flush");
        w.shutdown().await.expect("shutdown");
        assert_eq!(w.findings().count, 1, "split {split}");
        assert!(w.get_ref() == &expected, "split {split}");
        assert!(w.write_all(b"more").await.is_err(), "write after shutdown");
    }
    // The secret at the very end reaches the inner writer only at shutdown, redacted.
    let mut w = RedactWriter::new(&r, Vec::new());
    w.write_all(b"x FAKE-writer-secre").await.expect("write");
    w.flush().await.expect("flush");
    assert_eq!(w.get_ref(), b"x ");
    w.write_all(b"t").await.expect("write");
    w.shutdown().await.expect("shutdown");
    assert_eq!(w.get_ref(), b"x [REDACTED:t]");
}

/// Forms a test can put a secret in, with their encoders.
fn encode(kind: u8, secret: &[u8]) -> Vec<u8> {
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    match kind % 9 {
        0 => secret.to_vec(),
        1 => STANDARD.encode(secret).into_bytes(),
        2 => URL_SAFE_NO_PAD.encode(secret).into_bytes(),
        3 => hex::encode(secret).into_bytes(),
        4 => hex::encode_upper(secret).into_bytes(),
        5 => secret.to_ascii_lowercase(),
        6 => secret.to_ascii_uppercase(),
        7 => STANDARD.encode([secret, b"\n"].concat()).into_bytes(),
        _ => percent_encoding::percent_encode(secret, percent_encoding::NON_ALPHANUMERIC)
            .to_string()
            .into_bytes(),
    }
}

const GAPS: [&[u8]; 4] = [b"\x1b[31m", b"\xe2\x80\x8b", b"\x00", b"\xef\xbb\xbf"];

fn strip_gaps(mut b: Vec<u8>) -> Vec<u8> {
    for g in GAPS {
        while let Some(i) = b.windows(g.len()).position(|w| w == g) {
            b.drain(i..i + g.len());
        }
    }
    b
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    /// Random secrets in random encodings (some with a gap inserted), between filler bytes
    /// no form contains, fed in random chunks: no form survives, the filler is unchanged,
    /// streaming equals whole-buffer, and redaction is idempotent.
    #[test]
    fn prop_encoded_secrets_never_survive(
        secrets in prop::collection::vec("[A-Za-z0-9]{4,20}", 1..4),
        picks in prop::collection::vec((any::<u8>(), any::<u8>(), 0usize..4, any::<u16>()), 1..6),
        filler in prop::collection::vec(prop::sample::select(vec![b' ', b'\n', b',', b';', b'|', 0xff, 0xc3, b'}']), 0..40),
        cuts in prop::collection::vec(1usize..64, 1..8),
    ) {
        let secrets: Vec<Vec<u8>> = secrets.iter().map(|s| format!("FAKE{s}").into_bytes()).collect();
        let mut b = RedactorBuilder::new();
        for (i, s) in secrets.iter().enumerate() {
            b.add(&format!("s{i}"), &SecretValue::new(s.clone())).expect("valid");
        }
        let r = b.build();
        let mut input = filler.clone();
        let mut forms = Vec::new();
        for (which, kind, gap, at) in &picks {
            let secret = &secrets[usize::from(*which) % secrets.len()];
            let mut form = encode(*kind, secret);
            forms.push(form.clone());
            if *gap < GAPS.len() && kind % 9 == 0 {
                let at = 1 + usize::from(*at) % (form.len() - 1);
                form.splice(at..at, GAPS[*gap].iter().copied());
            }
            input.extend_from_slice(&form);
            input.extend_from_slice(&filler);
        }
        let whole = r.redact(&input);
        let mut s = r.stream();
        let mut out = Vec::new();
        let mut pos = 0;
        let mut i = 0;
        while pos < input.len() {
            let end = (pos + cuts[i % cuts.len()]).min(input.len());
            s.push(&input[pos..end], &mut out);
            pos = end;
            i += 1;
        }
        s.finish(&mut out);
        prop_assert_eq!(&out, &whole.output);
        let stripped = strip_gaps(out.clone());
        for form in &forms {
            prop_assert!(!stripped.windows(form.len()).any(|w| w == form.as_slice()));
        }
        prop_assert!(out.starts_with(&filler));
        prop_assert!(out.ends_with(&filler));
        prop_assert_eq!(r.redact(&out).output, out);
    }
}

/// JSON and HTML encoders that escape only some characters, or every character, or write
/// hex in upper case: each such form is found whole and across every split.
#[test]
fn partial_and_uppercase_json_and_html_escapes() {
    let aws = redactor(&[("k", b"FAKEsecretKEYtest/K7MDENG/bPxRfiFAKEKEY+abc")]);
    let mixed = redactor(&[("m", b"FAKEab+cd/ef=gh")]);
    let uni = redactor(&[("u", "FAKEé☃😀xyz".as_bytes())]);
    let alnum = redactor(&[("a", b"FAKEtoken123")]);
    type Case<'a> = (&'a str, &'a SecretRedactor, &'a [u8], &'a [u8]);
    let cases: &[Case] = &[
        // .NET System.Text.Json escapes `+` only, in upper-case hex.
        (
            "json_plus_only_upper",
            &aws,
            br#"{"k":"FAKEsecretKEYtest/K7MDENG/bPxRfiFAKEKEY\u002Babc"}"#,
            br#"{"k":"[REDACTED:k]"}"#,
        ),
        (
            "json_plus_only_lower",
            &aws,
            br#"{"k":"FAKEsecretKEYtest/K7MDENG/bPxRfiFAKEKEY\u002babc"}"#,
            br#"{"k":"[REDACTED:k]"}"#,
        ),
        (
            "json_two_of_three",
            &mixed,
            br#""FAKEab\u002Bcd/ef\u003Dgh""#,
            br#""[REDACTED:m]""#,
        ),
        (
            "json_non_ascii_upper_hex",
            &uni,
            br#""FAKE\u00E9\u2603\uD83D\uDE00xyz""#,
            br#""[REDACTED:u]""#,
        ),
        (
            "json_every_character",
            &alnum,
            br#""\u0046\u0041\u004b\u0045\u0074\u006f\u006b\u0065\u006e\u0031\u0032\u0033""#,
            br#""[REDACTED:a]""#,
        ),
        (
            "html_slash_only_hex",
            &mixed,
            b"<p>FAKEab+cd&#x2F;ef=gh</p>",
            b"<p>[REDACTED:m]</p>",
        ),
        (
            "html_plus_only_decimal",
            &mixed,
            b"<p>FAKEab&#43;cd/ef=gh</p>",
            b"<p>[REDACTED:m]</p>",
        ),
        (
            "html_non_ascii_decimal",
            &uni,
            b"<p>FAKE&#233;&#9731;&#128512;xyz</p>",
            b"<p>[REDACTED:u]</p>",
        ),
        (
            "html_every_character_upper_x",
            &alnum,
            b"&#X46;&#X41;&#X4B;&#X45;&#X74;&#X6F;&#X6B;&#X65;&#X6E;&#X31;&#X32;&#X33;",
            b"[REDACTED:a]",
        ),
        (
            "html_every_character_decimal",
            &alnum,
            b"&#70;&#65;&#75;&#69;&#116;&#111;&#107;&#101;&#110;&#49;&#50;&#51;",
            b"[REDACTED:a]",
        ),
    ];
    for (name, r, input, expected) in cases {
        check(r, name, input, expected, 1);
    }
}

/// Terminal sequences programs print inside a matched word: GNU grep's colour with erase-line
/// (`ESC[01;31mESC[K … ESC[mESC[K`), the `:` colour form, a cursor move, a word joiner.
#[test]
fn control_sequences_and_word_joiner_inside_a_secret() {
    let r = redactor(&[("t", b"FAKEacmeTOKEN0123456789abcdef")]);
    type Case<'a> = (&'a str, &'a [u8], &'a [u8]);
    let cases: &[Case] = &[
        (
            "grep_color_always",
            b"FAKEacme\x1b[01;31m\x1b[KTOKEN\x1b[m\x1b[K0123456789abcdef\n",
            b"[REDACTED:t]\n",
        ),
        (
            "colon_truecolor",
            b"x FAKEacme\x1b[38:2::255:0:0mTOKEN0123456789abcdef y",
            b"x [REDACTED:t] y",
        ),
        (
            "cursor_forward",
            b"FAKEacmeTOKEN\x1b[1C0123456789abcdef",
            b"[REDACTED:t]",
        ),
        (
            "word_joiner",
            "FAKEacme\u{2060}TOKEN0123456789abcdef".as_bytes(),
            b"[REDACTED:t]",
        ),
        (
            "csi_before_text_is_not_a_secret",
            b"\x1b[2Jplain text",
            b"\x1b[2Jplain text",
        ),
    ];
    for (name, input, expected) in cases {
        let count = usize::from(input != expected);
        check(&r, name, input, expected, count);
    }
}

/// A gap in a large haystack makes a skeleton of its surroundings only, and a secret with a
/// gap inside is still found there, whole and streamed.
#[test]
fn skeleton_keeps_only_the_surroundings_of_gaps() {
    use super::gaps::Skeleton;
    let mut hay = vec![b'.'; 200_000];
    hay[100_000] = 0x07;
    let sk = Skeleton::build_near(&hay, 0, 64).expect("a gap");
    let kept: usize = sk.segments().iter().map(|s| s.end - s.start).sum();
    assert_eq!(kept, 128, "64 bytes each side of the gap");
    assert!(!sk.reaches_end());
    let r = redactor(&[("t", b"FAKEacmeTOKEN0123456789abcdef")]);
    let mut input = vec![b'.'; 200_000];
    input.extend_from_slice(b"FAKEacme\x07TOKEN0123456789abcdef");
    input.extend_from_slice(&[b'.'; 100_000]);
    let mut want = vec![b'.'; 200_000];
    want.extend_from_slice(b"[REDACTED:t]");
    want.extend_from_slice(&[b'.'; 100_000]);
    let whole = r.redact(&input);
    assert!(whole.output == want && whole.count == 1);
    assert_eq!(stream_in_chunks(&r, &input, 4096), (want, 1));
}
