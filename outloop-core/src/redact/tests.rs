//! Table-driven tests of the redactor: every encoding, overlap rules, refusals, streaming.

use proptest::prelude::*;

use super::*;

/// A redactor over `(label, value)` pairs with the default floor.
pub(super) fn redactor(secrets: &[(&str, &[u8])]) -> SecretRedactor {
    let mut b = RedactorBuilder::new();
    for (label, value) in secrets {
        b.add(label, &SecretValue::new(value.to_vec()))
            .expect("test secret is valid");
    }
    b.build()
}

/// Feeds `input` in pieces of `size` bytes and returns the output and the total count.
pub(super) fn stream_in_chunks(r: &SecretRedactor, input: &[u8], size: usize) -> (Vec<u8>, usize) {
    let mut s = r.stream();
    let mut out = Vec::new();
    let mut count = 0;
    for chunk in input.chunks(size.max(1)) {
        count += s.push(chunk, &mut out);
    }
    count += s.finish(&mut out);
    (out, count)
}

/// Checks whole-buffer redaction, one-byte streaming and a two-piece stream split at every
/// offset against `expected`.
pub(super) fn check(r: &SecretRedactor, name: &str, input: &[u8], expected: &[u8], count: usize) {
    let show = |b: &[u8]| format!("{:?}", String::from_utf8_lossy(b));
    let whole = r.redact(input);
    assert!(
        whole.output == expected,
        "case {name}: whole buffer: got {} want {}",
        show(&whole.output),
        show(expected)
    );
    assert_eq!(whole.count, count, "case {name}: count");
    let (bytewise, n) = stream_in_chunks(r, input, 1);
    assert!(
        bytewise == expected,
        "case {name}: 1-byte chunks: got {}",
        show(&bytewise)
    );
    assert_eq!(n, count, "case {name}: 1-byte chunks count");
    for split in 0..=input.len() {
        let mut s = r.stream();
        let mut out = Vec::new();
        let mut n = s.push(&input[..split], &mut out);
        n += s.push(&input[split..], &mut out);
        n += s.finish(&mut out);
        assert!(
            out == expected,
            "case {name}: split at {split}: got {}",
            show(&out)
        );
        assert_eq!(n, count, "case {name}: split at {split} count");
    }
    let again = r.redact(&whole.output);
    assert_eq!(again.output, whole.output, "case {name}: idempotent");
    assert_eq!(again.count, 0, "case {name}: idempotent count");
}

const B64_SECRET: &[u8] = b"FAKE~b64?secret>>value";

#[test]
fn raw() {
    let r = redactor(&[("k", B64_SECRET), ("t", b"FAKE-token-123")]);
    let cases: &[(&str, &[u8], &[u8], usize)] = &[
        (
            "raw_middle",
            b"key=FAKE~b64?secret>>value;",
            b"key=[REDACTED:k];",
            1,
        ),
        ("raw_alone", b"FAKE-token-123", b"[REDACTED:t]", 1),
        (
            "raw_twice",
            b"a FAKE-token-123 b FAKE-token-123",
            b"a [REDACTED:t] b [REDACTED:t]",
            2,
        ),
        (
            "raw_truncated_is_kept",
            b"FAKE-token-12 x",
            b"FAKE-token-12 x",
            0,
        ),
        ("no_secret", b"hello world", b"hello world", 0),
        ("empty_input", b"", b"", 0),
    ];
    for (name, input, expected, count) in cases {
        check(&r, name, input, expected, *count);
    }
}

#[test]
fn base64_each_flavour_and_alignment() {
    let r = redactor(&[("k", B64_SECRET)]);
    // Inputs are base64 of "", "X" or "XY", then the secret, then "\xc3\xa9tail" or nothing:
    // at offset 1 the first 2 characters, at offset 2 the first 3, depend on the bytes before
    // the secret and are kept; after the stable run, the characters that depend on the
    // following bytes are kept.
    let cases: &[(&str, &[u8], &[u8])] = &[
        (
            "std_align0_interior",
            b"RkFLRX5iNjQ/c2VjcmV0Pj52YWx1ZcOpdGFpbA==",
            b"REDACTEDREDACTEDREDACTEDREDACcOpdGFpbA==",
        ),
        (
            "std_align0_end_padded",
            b"RkFLRX5iNjQ/c2VjcmV0Pj52YWx1ZQ==",
            b"REDACTEDREDACTEDREDACTEDREDACA==",
        ),
        (
            "std_align0_end_unpadded",
            b"RkFLRX5iNjQ/c2VjcmV0Pj52YWx1ZQ.x",
            b"REDACTEDREDACTEDREDACTEDREDACT.x",
        ),
        (
            "std_align1_interior",
            b"WEZBS0V+YjY0P3NlY3JldD4+dmFsdWXDqXRhaWw=",
            b"WEREDACTEDREDACTEDREDACTEDREDAXDqXRhaWw=",
        ),
        (
            "std_align1_end_padded",
            b"WEZBS0V+YjY0P3NlY3JldD4+dmFsdWU=",
            b"WEREDACTEDREDACTEDREDACTEDREDAA=",
        ),
        (
            "std_align1_end_unpadded",
            b"WEZBS0V+YjY0P3NlY3JldD4+dmFsdWU.x",
            b"WEREDACTEDREDACTEDREDACTEDREDAC.x",
        ),
        (
            "std_align2_interior",
            b"WFlGQUtFfmI2ND9zZWNyZXQ+PnZhbHVlw6l0YWls",
            b"WFlREDACTEDREDACTEDREDACTEDREDACw6l0YWls",
        ),
        (
            "std_align2_end_padded",
            b"WFlGQUtFfmI2ND9zZWNyZXQ+PnZhbHVl",
            b"WFlREDACTEDREDACTEDREDACTEDREDAC",
        ),
        (
            "url_align0_interior",
            b"RkFLRX5iNjQ_c2VjcmV0Pj52YWx1ZcOpdGFpbA==",
            b"REDACTEDREDACTEDREDACTEDREDACcOpdGFpbA==",
        ),
        (
            "url_align0_end_padded",
            b"RkFLRX5iNjQ_c2VjcmV0Pj52YWx1ZQ==",
            b"REDACTEDREDACTEDREDACTEDREDACA==",
        ),
        (
            "url_align0_end_unpadded",
            b"RkFLRX5iNjQ_c2VjcmV0Pj52YWx1ZQ.x",
            b"REDACTEDREDACTEDREDACTEDREDACT.x",
        ),
        (
            "url_align1_interior",
            b"WEZBS0V-YjY0P3NlY3JldD4-dmFsdWXDqXRhaWw=",
            b"WEREDACTEDREDACTEDREDACTEDREDAXDqXRhaWw=",
        ),
        (
            "url_align1_end_padded",
            b"WEZBS0V-YjY0P3NlY3JldD4-dmFsdWU=",
            b"WEREDACTEDREDACTEDREDACTEDREDAA=",
        ),
        (
            "url_align1_end_unpadded",
            b"WEZBS0V-YjY0P3NlY3JldD4-dmFsdWU.x",
            b"WEREDACTEDREDACTEDREDACTEDREDAC.x",
        ),
        (
            "url_align2_interior",
            b"WFlGQUtFfmI2ND9zZWNyZXQ-PnZhbHVlw6l0YWls",
            b"WFlREDACTEDREDACTEDREDACTEDREDACw6l0YWls",
        ),
        (
            "url_align2_end_padded",
            b"WFlGQUtFfmI2ND9zZWNyZXQ-PnZhbHVl",
            b"WFlREDACTEDREDACTEDREDACTEDREDAC",
        ),
        (
            "std_json_escaped_slash",
            b"\"RkFLRX5iNjQ\\/c2VjcmV0Pj52YWx1ZQ==\"",
            b"\"[REDACTED:k]\"",
        ),
    ];
    for (name, input, expected) in cases {
        check(&r, name, input, expected, 1);
    }
}

#[test]
fn hex_both_cases() {
    let r = redactor(&[("h", b"FAKE-hex-secret")]);
    let cases: &[(&str, &[u8], &[u8])] = &[
        (
            "hex_lower",
            b"id=46414b452d6865782d736563726574;",
            b"id=[REDACTED:h];",
        ),
        (
            "hex_upper",
            b"id=46414B452D6865782D736563726574;",
            b"id=[REDACTED:h];",
        ),
    ];
    for (name, input, expected) in cases {
        check(&r, name, input, expected, 1);
    }
}

#[test]
fn percent_both_cases_and_plus() {
    let r = redactor(&[("p", "FAKE pass/w\u{f6}rd&x=1~*".as_bytes())]);
    let cases: &[(&str, &str)] = &[
        ("percent_upper", "q=FAKE%20pass%2Fw%C3%B6rd%26x%3D1~%2A&n=1"),
        ("percent_lower", "q=FAKE%20pass%2fw%c3%b6rd%26x%3d1~%2a&n=1"),
        (
            "percent_plus_upper",
            "q=FAKE+pass%2Fw%C3%B6rd%26x%3D1~%2A&n=1",
        ),
        (
            "percent_plus_lower",
            "q=FAKE+pass%2fw%c3%b6rd%26x%3d1~%2a&n=1",
        ),
        (
            "percent_form_upper",
            "q=FAKE+pass%2Fw%C3%B6rd%26x%3D1%7E*&n=1",
        ),
        (
            "percent_form_lower_space",
            "q=FAKE%20pass%2fw%c3%b6rd%26x%3d1%7e*&n=1",
        ),
        ("percent_raw", "q=FAKE pass/w\u{f6}rd&x=1~*&n=1"),
        // A server that re-quotes a URL with its own safe set (seen from Werkzeug/httpbin):
        // `/` and `~` raw, `&` and `=` encoded, space as `+`.
        (
            "percent_requoted_mixed",
            "q=FAKE+pass/w%C3%B6rd%26x%3D1~%2A&n=1",
        ),
        (
            "percent_mixed_lower",
            "q=FAKE%20pass/w%c3%b6rd&x%3d1%7e*&n=1",
        ),
        (
            "percent_every_byte",
            "q=%46%41%4B%45%20%70%61%73%73%2F%77%C3%B6%72%64%26%78%3D%31%7E%2A&n=1",
        ),
    ];
    for (name, input) in cases {
        check(&r, name, input.as_bytes(), b"q=[REDACTED:p]&n=1", 1);
    }
}

#[test]
fn percent_form_inside_a_json_string() {
    // httpbin echoes the request URL in JSON: a re-quoted query value, then JSON-escaped.
    let r = redactor(&[("k", b"FAKE acme/key+with&odd=chars\"1")]);
    check(
        &r,
        "percent_then_json",
        br#"{"url": "http://h/anything?api_key=FAKE+acme/key%2Bwith%26odd%3Dchars\"1"}"#,
        br#"{"url": "http://h/anything?api_key=[REDACTED:k]"}"#,
        1,
    );
    check(
        &r,
        "percent_then_json_slash",
        br#"{"url": "http://h/?k=FAKE+acme\/key%2Bwith%26odd%3Dchars\"1"}"#,
        br#"{"url": "http://h/?k=[REDACTED:k]"}"#,
        1,
    );
}

#[test]
fn json_escapes() {
    let secret = "FAKE\"quo\\te/slash<tag>\u{e9}";
    let r = redactor(&[("j", secret.as_bytes()), ("n", b"FAKE-line1\nline2\t")]);
    let cases: &[(&str, &str, &str)] = &[
        (
            "json_serde",
            r#"{"v":"FAKE\"quo\\te/slash<tag>é"}"#,
            r#"{"v":"[REDACTED:j]"}"#,
        ),
        (
            "json_slash",
            r#"{"v":"FAKE\"quo\\te\/slash<tag>é"}"#,
            r#"{"v":"[REDACTED:j]"}"#,
        ),
        (
            "json_html_safe",
            r#"{"v":"FAKE\"quo\\te/slash\u003ctag\u003eé"}"#,
            r#"{"v":"[REDACTED:j]"}"#,
        ),
        (
            "json_ascii_only",
            r#"{"v":"FAKE\"quo\\te/slash<tag>\u00e9"}"#,
            r#"{"v":"[REDACTED:j]"}"#,
        ),
        (
            "json_ascii_only_slash",
            r#"{"v":"FAKE\"quo\\te\/slash<tag>\u00e9"}"#,
            r#"{"v":"[REDACTED:j]"}"#,
        ),
        (
            "json_all_u_lower",
            r#"{"v":"FAKE\u0022quo\u005cte\u002fslash\u003ctag\u003eé"}"#,
            r#"{"v":"[REDACTED:j]"}"#,
        ),
        (
            "json_all_u_upper",
            r#"{"v":"FAKE\u0022quo\u005Cte\u002Fslash\u003Ctag\u003Eé"}"#,
            r#"{"v":"[REDACTED:j]"}"#,
        ),
        (
            "json_raw_in_text",
            "x FAKE\"quo\\te/slash<tag>é x",
            "x [REDACTED:j] x",
        ),
        (
            "json_control_chars",
            r#"{"v":"FAKE-line1\nline2\t"}"#,
            r#"{"v":"[REDACTED:n]"}"#,
        ),
    ];
    for (name, input, expected) in cases {
        check(&r, name, input.as_bytes(), expected.as_bytes(), 1);
    }
    // The plain form is exactly what serde_json writes.
    for value in [secret, "FAKE-line1\nline2\t"] {
        let json = serde_json::to_string(&serde_json::json!({ "v": value })).expect("serializes");
        let out = r.redact(json.as_bytes());
        assert_eq!(out.count, 1, "serde_json output of a secret is found");
        assert!(out.output.starts_with(b"{\"v\":\"[REDACTED:"), "{out:?}");
    }
}

#[test]
fn overlapping_nested_and_adjacent() {
    type Case<'a> = (
        &'a str,
        &'a [(&'a str, &'a [u8])],
        &'a [u8],
        &'a [u8],
        usize,
    );
    let cases: &[Case] = &[
        (
            "overlapping",
            &[("a", b"abcdefgh12"), ("b", b"fgh12345zz")],
            b"xx abcdefgh12345zz yy",
            b"xx [REDACTED:a] yy",
            1,
        ),
        (
            "overlapping_label_is_first_in_run",
            &[("b", b"fgh12345zz"), ("a", b"abcdefgh12")],
            b"xx abcdefgh12345zz yy",
            b"xx [REDACTED:a] yy",
            1,
        ),
        (
            "overlapping_chain_of_three",
            &[
                ("a", b"abcdefgh12"),
                ("b", b"fgh12345zz"),
                ("c", b"45zzQRSTUV"),
            ],
            b"<abcdefgh12345zzQRSTUV>",
            b"<[REDACTED:a]>",
            1,
        ),
        (
            "nested",
            &[("o", b"FAKEouter-inner5678-end"), ("i", b"inner5678")],
            b"1 FAKEouter-inner5678-end 2 inner5678 3",
            b"1 [REDACTED:o] 2 [REDACTED:i] 3",
            2,
        ),
        (
            "nested_same_start_longest_wins",
            &[("s", b"FAKEshort1"), ("l", b"FAKEshort1-and-longer")],
            b"FAKEshort1-and-longer / FAKEshort1-and",
            b"[REDACTED:l] / [REDACTED:s]-and",
            2,
        ),
        (
            "nested_inner_registered_first",
            &[("i", b"inner5678"), ("o", b"FAKEouter-inner5678-end")],
            b"FAKEouter-inner5678-end",
            b"[REDACTED:o]",
            1,
        ),
        (
            "self_overlapping",
            &[("s", b"abababab12")],
            b"abababababab12",
            b"abab[REDACTED:s]",
            1,
        ),
        (
            "self_overlapping_periodic_run",
            &[("p", b"ababababab")],
            b"x abababababababab x ababababa",
            b"x [REDACTED:p] x ababababa",
            1,
        ),
        (
            "adjacent_are_separate",
            &[("a", b"FAKEaaaa1"), ("b", b"FAKEbbbb2")],
            b"FAKEaaaa1FAKEbbbb2",
            b"[REDACTED:a][REDACTED:b]",
            2,
        ),
        (
            "same_value_two_labels_first_wins",
            &[("first", b"FAKE-shared-1"), ("second", b"FAKE-shared-1")],
            b"FAKE-shared-1",
            b"[REDACTED:first]",
            1,
        ),
    ];
    for (name, secrets, input, expected, count) in cases {
        check(&redactor(secrets), name, input, expected, *count);
    }
}

#[test]
fn invalid_utf8_passes_through() {
    let r = redactor(&[("t", b"FAKE-token-123"), ("bin", b"\xffFAKE\xfe\x00bin")]);
    let cases: &[(&str, &[u8], &[u8], usize)] = &[
        (
            "invalid_utf8_around_secret",
            b"\xff\xfe FAKE-token-123 \xc3(",
            b"\xff\xfe [REDACTED:t] \xc3(",
            1,
        ),
        (
            "binary_secret",
            b"\x00\x01\xffFAKE\xfe\x00bin\x80",
            b"\x00\x01[REDACTED:bin]\x80",
            1,
        ),
        (
            "invalid_utf8_only",
            b"\xff\xfe\xfd\x80\x00",
            b"\xff\xfe\xfd\x80\x00",
            0,
        ),
    ];
    for (name, input, expected, count) in cases {
        check(&r, name, input, expected, *count);
    }
}

#[test]
fn refusals_name_the_label_and_rule_not_the_value() {
    let cases: &[(&str, usize, &[u8], &str)] = &[
        ("empty", DEFAULT_FLOOR, b"", "empty"),
        (
            "below_default_floor",
            DEFAULT_FLOOR,
            b"FAKE123",
            "floor of 8 bytes",
        ),
        ("below_custom_floor", 12, b"FAKE-1234", "floor of 12 bytes"),
        (
            "punctuation_only",
            DEFAULT_FLOOR,
            b"!!!!----____",
            "punctuation",
        ),
        (
            "whitespace_only",
            DEFAULT_FLOOR,
            b"  \t\n        ",
            "whitespace",
        ),
        (
            "control_and_punctuation",
            DEFAULT_FLOOR,
            b"\x00\x00\x00\x00!!!!",
            "control",
        ),
    ];
    for (name, floor, value, rule) in cases {
        let mut b = RedactorBuilder::new().floor(*floor);
        let err = b
            .add("cred-x", &SecretValue::new(value.to_vec()))
            .expect_err(name);
        assert_eq!(err.kind(), ErrorKind::InvalidSecret, "case {name}");
        let text = format!("{err} {err:?}");
        assert!(text.contains("cred-x"), "case {name}: {text}");
        assert!(text.contains(rule), "case {name}: {text}");
        if !value.is_empty() {
            let shown = String::from_utf8_lossy(value);
            assert!(!text.contains(&*shown), "case {name}: value leaked: {text}");
        }
        assert_eq!(
            b.build().pattern_count(),
            0,
            "case {name}: nothing registered"
        );
    }
    let mut b = RedactorBuilder::new();
    b.add("ok", &SecretValue::new(b"FAKE1234".to_vec()))
        .expect("a value at the floor is accepted");
}

#[test]
fn forms_shorter_than_the_floor_are_not_searched() {
    let all = variants::forms(b"FAKE1234", 1);
    assert!(all.iter().any(|v| v.0.len() < 11), "some forms are short");
    let kept = variants::forms(b"FAKE1234", 11);
    assert!(!kept.is_empty());
    assert!(kept.iter().all(|v| v.0.len() >= 11));
    assert!(kept.len() < all.len());
    assert!(!kept.iter().any(|v| v.0.as_slice() == b"FAKE1234"));
}

#[test]
fn debug_prints_no_secret() {
    let planted = "FAKE-debug-planted-9876";
    let mut b = RedactorBuilder::new();
    b.add("dbg", &SecretValue::from_string(planted.into()))
        .expect("valid");
    let builder_dbg = format!("{b:?} {b:#?}");
    let r = b.build();
    let mut s = r.stream_session();
    let mut out = Vec::new();
    s.push(b"xx FAKE-debug-planted-98", &mut out);
    assert_eq!(out, b"xx ", "the secret's prefix is held");
    let shown = format!("{builder_dbg} {r:?} {r:#?} {s:?} {s:#?}");
    for needle in [planted, "FAKE-debug-planted", "RkFLRS1kZWJ1Zy1wbGFudGVk"] {
        assert!(!shown.contains(needle), "{shown}");
    }
    assert!(shown.contains("dbg"), "labels are shown: {shown}");
}

#[test]
fn empty_redactor_passes_through() {
    let r = RedactorBuilder::new().build();
    check(
        &r,
        "empty_redactor",
        b"anything \xff at all",
        b"anything \xff at all",
        0,
    );
}

/// `redact_into` appends what `redact` returns to the caller's buffer and reports the same
/// findings, for the built-in redactor and for the trait's default implementation.
#[test]
fn redact_into_appends_the_same_output_and_findings() {
    /// A redactor with only `redact` implemented, to exercise the default `redact_into`.
    struct Upper;
    impl Redactor for Upper {
        fn redact(&self, input: &[u8]) -> Redacted {
            Redacted {
                output: input.to_ascii_uppercase(),
                count: 1,
                folded: 0,
                canaries: vec!["acme".into()],
            }
        }
        fn stream(&self) -> Box<dyn RedactStream + Send> {
            unreachable!("not streamed in this test")
        }
    }
    let secret = b"FAKE-into-token-123";
    let r = redactor(&[("t", secret)]);
    let input = b"a=FAKE-into-token-123 b=fake-into-token-123 c";
    let whole = r.redact(input);
    let mut out = b"kept:".to_vec();
    let found = r.redact_into(input, &mut out);
    assert_eq!(&out[..5], b"kept:", "earlier contents stay");
    assert_eq!(&out[5..], whole.output.as_slice());
    assert_eq!((found.count, found.folded), (whole.count, whole.folded));
    assert_eq!((found.count, found.folded), (2, 1));
    assert!(!contains(&out, secret));
    // Reused: cleared and filled again, no allocation needed this time.
    let capacity = out.capacity();
    out.clear();
    r.redact_into(input, &mut out);
    assert_eq!(out, whole.output);
    assert_eq!(out.capacity(), capacity);

    let mut out = b"x".to_vec();
    let found = Upper.redact_into(b"abc", &mut out);
    assert_eq!(out, b"xABC");
    assert_eq!(found.count, 1);
    assert_eq!(found.canaries, ["acme"]);
}

#[test]
fn stream_releases_a_chunk_with_no_secret_prefix_at_once() {
    let r = redactor(&[("t", b"FAKE-token-123")]);
    let mut s = r.stream();
    let mut out = Vec::new();
    assert_eq!(s.push(b"hello world", &mut out), 0);
    assert_eq!(out, b"hello world");
    assert_eq!(s.finish(&mut out), 0);
    assert_eq!(out, b"hello world");
}

#[test]
fn stream_holds_only_a_possible_secret_prefix() {
    let r = redactor(&[("t", b"FAKE-token-123")]);
    let mut s = r.stream();
    let mut out = Vec::new();
    assert_eq!(s.push(b"hello FAKE-to", &mut out), 0);
    assert_eq!(out, b"hello ");
    assert_eq!(s.push(b"ken-123!", &mut out), 1);
    assert_eq!(out, b"hello [REDACTED:t]!");
    assert_eq!(s.finish(&mut out), 0);
    assert_eq!(out, b"hello [REDACTED:t]!");
    // A held tail that turns out not to be a secret is released at the end.
    let mut out = Vec::new();
    s.push(b"a FAKE-tok", &mut out);
    assert_eq!(out, b"a ");
    s.finish(&mut out);
    assert_eq!(out, b"a FAKE-tok");
}

#[test]
fn stream_redacts_the_held_tail_at_finish() {
    let r = redactor(&[("a", b"FAKE-token-123"), ("b", b"FAKE-token-123456")]);
    let mut s = r.stream();
    let mut out = Vec::new();
    assert_eq!(s.push(b"x FAKE-token-123", &mut out), 0);
    assert_eq!(out, b"x ", "a complete secret that may still grow is held");
    assert_eq!(s.finish(&mut out), 1);
    assert_eq!(out, b"x [REDACTED:a]");
}

#[test]
fn stream_every_three_way_split() {
    let r = redactor(&[
        ("t", b"FAKE-token-123"),
        ("k", B64_SECRET),
        ("a", b"abcdefgh12"),
        ("b", b"fgh12345zz"),
    ]);
    let input: &[u8] = b"p FAKE-token-123 q RkFLRX5iNjQ/c2VjcmV0Pj52YWx1ZQ== abcdefgh12345zz";
    let expected: &[u8] = b"p [REDACTED:t] q REDACTEDREDACTEDREDACTEDREDACA== [REDACTED:a]";
    for i in 0..=input.len() {
        for j in i..=input.len() {
            let mut s = r.stream();
            let mut out = Vec::new();
            let mut n = s.push(&input[..i], &mut out);
            n += s.push(&input[i..j], &mut out);
            n += s.push(&input[j..], &mut out);
            n += s.finish(&mut out);
            assert_eq!(out, expected, "split at {i}, {j}");
            assert_eq!(n, 3, "split at {i}, {j}");
        }
    }
}

#[test]
fn stream_4096_byte_chunks_of_a_large_input() {
    let secrets: [(&str, &[u8]); 3] = [
        ("t", b"FAKE-token-123"),
        ("k", B64_SECRET),
        ("h", b"FAKE-hex-secret"),
    ];
    let r = redactor(&secrets);
    let forms: [&[u8]; 4] = [
        b"FAKE-token-123",
        b"RkFLRX5iNjQ/c2VjcmV0Pj52YWx1ZQ==",
        b"46414B452D6865782D736563726574",
        b"FAKE~b64?secret>>value",
    ];
    let tags: [&[u8]; 4] = [
        b"[REDACTED:t]",
        b"REDACTEDREDACTEDREDACTEDREDACA==",
        b"[REDACTED:h]",
        b"[REDACTED:k]",
    ];
    let mut input = Vec::new();
    let mut expected = Vec::new();
    let mut inserted = 0;
    let mut line = 0usize;
    while input.len() < 1 << 20 {
        let filler = format!("line {line}: ordinary response text, nothing to hide\n");
        input.extend_from_slice(filler.as_bytes());
        expected.extend_from_slice(filler.as_bytes());
        // Put a secret across the next 4096-byte boundary now and then.
        if line.is_multiple_of(7) {
            let boundary = (input.len() / 4096 + 1) * 4096;
            let pad = (boundary - input.len()).saturating_sub(5 + line % 9);
            input.resize(input.len() + pad, b'.');
            expected.resize(expected.len() + pad, b'.');
            input.extend_from_slice(forms[line % 4]);
            expected.extend_from_slice(tags[line % 4]);
            input.push(b'\n');
            expected.push(b'\n');
            inserted += 1;
        }
        line += 1;
    }
    let whole = r.redact(&input);
    assert!(whole.output == expected, "whole-buffer output differs");
    assert_eq!(whole.count, inserted);
    let (streamed, count) = stream_in_chunks(&r, &input, 4096);
    assert!(streamed == expected, "streamed output differs");
    assert_eq!(count, inserted);
    for form in forms {
        assert!(!streamed.windows(form.len()).any(|w| w == form));
    }
}

#[test]
fn stream_is_reusable_after_finish() {
    let r = redactor(&[("t", b"FAKE-token-123")]);
    let mut s = r.stream();
    for _ in 0..2 {
        let mut out = Vec::new();
        let n = s.push(b"a FAKE-tok", &mut out) + s.push(b"en-123", &mut out);
        let n = n + s.finish(&mut out);
        assert_eq!(out, b"a [REDACTED:t]");
        assert_eq!(n, 1);
    }
}

#[test]
fn redactor_is_send_sync_clone_and_object_safe() {
    fn assert_traits<T: Send + Sync + Clone + 'static>(_: &T) {}
    let r = redactor(&[("t", b"FAKE-token-123")]);
    assert_traits(&r);
    let shared: std::sync::Arc<dyn Redactor> = std::sync::Arc::new(r.clone());
    let stream = shared.stream();
    let handle = std::thread::spawn(move || {
        let mut stream = stream;
        let mut out = Vec::new();
        stream.push(b"FAKE-token-123", &mut out);
        stream.finish(&mut out);
        out
    });
    assert_eq!(handle.join().expect("thread ran"), b"[REDACTED:t]");
    assert_eq!(r.labels(), ["t".to_owned()]);
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Feeds `input` cut at the sizes in `sizes` (cycled).
fn stream_with_sizes(r: &SecretRedactor, input: &[u8], sizes: &[usize]) -> (Vec<u8>, usize) {
    let mut s = r.stream();
    let mut out = Vec::new();
    let mut count = 0;
    let mut rest = input;
    for size in sizes.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (head, tail) = rest.split_at((*size).min(rest.len()));
        count += s.push(head, &mut out);
        rest = tail;
    }
    count += s.finish(&mut out);
    (out, count)
}

/// A naive model of the redaction rule over raw values only: mark every occurrence of every
/// secret, merge overlapping occurrences, label each run by the longest secret at its start
/// (the first added among equals).
fn naive(secrets: &[(&str, Vec<u8>)], input: &[u8]) -> (Vec<u8>, usize) {
    let mut starts: Vec<Option<(usize, usize)>> = vec![None; input.len()];
    for (i, (_, s)) in secrets.iter().enumerate() {
        for p in 0..input.len() {
            if input[p..].starts_with(s) && starts[p].is_none_or(|(len, _)| s.len() > len) {
                starts[p] = Some((s.len(), i));
            }
        }
    }
    let (mut out, mut count, mut p) = (Vec::new(), 0, 0);
    while p < input.len() {
        match starts[p] {
            Some((len, label)) => {
                let mut end = p + len;
                let mut q = p + 1;
                while q < end {
                    if let Some((l, _)) = starts[q] {
                        end = end.max(q + l);
                    }
                    q += 1;
                }
                out.extend_from_slice(format!("[REDACTED:{}]", secrets[label].0).as_bytes());
                count += 1;
                p = end;
            }
            None => {
                out.push(input[p]);
                p += 1;
            }
        }
    }
    (out, count)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn prop_secret_never_survives_and_stream_matches_whole(
        tail in "[A-Za-z0-9]{4,28}",
        before in proptest::collection::vec(any::<u8>(), 0..160),
        after in proptest::collection::vec(any::<u8>(), 0..160),
        pad in proptest::collection::vec(any::<u8>(), 0..3),
        form in 0usize..6,
        sizes in proptest::collection::vec(1usize..48, 1..12),
    ) {
        use base64::Engine as _;
        use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
        let secret = format!("FAKE{tail}").into_bytes();
        let r = redactor(&[("k", &secret)]);
        let mut embedded = pad.clone();
        embedded.extend_from_slice(&secret);
        embedded.extend_from_slice(&after);
        let forms = [
            secret.clone(),
            STANDARD.encode(&secret).into_bytes(),
            URL_SAFE_NO_PAD.encode(&secret).into_bytes(),
            hex::encode(&secret).into_bytes(),
            hex::encode_upper(&secret).into_bytes(),
            STANDARD.encode(&embedded).into_bytes(),
        ];
        let mut input = before.clone();
        input.extend_from_slice(&forms[form]);
        input.extend_from_slice(&after);

        let whole = r.redact(&input);
        prop_assert!(whole.count >= 1);
        for f in &forms[..5] {
            prop_assert!(!contains(&whole.output, f));
        }
        let (streamed, count) = stream_with_sizes(&r, &input, &sizes);
        prop_assert_eq!(&streamed, &whole.output);
        prop_assert_eq!(count, whole.count);
        prop_assert_eq!(r.redact(&whole.output).output, whole.output);
    }

    #[test]
    fn prop_overlaps_match_a_naive_model(
        a in "[ab]{8,12}",
        b in "[ab]{8,12}",
        pieces in proptest::collection::vec((0usize..6, 0usize..12), 0..14),
        sizes in proptest::collection::vec(1usize..24, 1..8),
    ) {
        // Inputs built from whole secrets, their heads and tails, and filler, so matches
        // overlap, nest and touch often.
        let mut input = String::new();
        for (kind, cut) in pieces {
            match kind {
                0 => input.push_str(&a),
                1 => input.push_str(&b),
                2 => input.push_str(&a[cut.min(a.len())..]),
                3 => input.push_str(&b[..cut.min(b.len())]),
                4 => input.push_str(["a", "b", " "][cut % 3]),
                _ => input.push_str(&b[cut.min(b.len())..]),
            }
        }
        let secrets = vec![("x", a.into_bytes()), ("y", b.into_bytes())];
        let r = redactor(&[("x", &secrets[0].1), ("y", &secrets[1].1)]);
        let (expected, n) = naive(&secrets, input.as_bytes());
        let whole = r.redact(input.as_bytes());
        prop_assert_eq!(String::from_utf8_lossy(&whole.output), String::from_utf8_lossy(&expected));
        prop_assert_eq!(whole.count, n);
        let (streamed, count) = stream_with_sizes(&r, input.as_bytes(), &sizes);
        prop_assert_eq!(&streamed, &whole.output);
        prop_assert_eq!(count, n);
    }
}

/// The secrets for the sampling property: token-like values of 8 to 48 bytes.
fn sampled_secrets(tails: &[String]) -> Vec<Vec<u8>> {
    tails
        .iter()
        .map(|t| format!("FAKE{t}").into_bytes())
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(192))]

    /// The sampling prefilter changes nothing: over random text with secrets (in random
    /// encodings and letter case) embedded at random offsets, the sampled redactor's output,
    /// counts and findings equal those of a redactor whose automata read every byte, whole
    /// and streamed.
    #[test]
    fn prop_sampling_changes_nothing(
        tails in proptest::collection::vec("[A-Za-z0-9_-]{4,44}", 1..7),
        pieces in proptest::collection::vec((0usize..8, 0usize..6, "[ -~]{0,90}"), 1..10),
        sizes in proptest::collection::vec(1usize..300, 1..6),
    ) {
        use base64::Engine as _;
        use base64::engine::general_purpose::STANDARD;
        let secrets = sampled_secrets(&tails);
        let build = |sampling: bool| {
            let mut b = RedactorBuilder::new();
            if !sampling {
                b = b.without_sampling();
            }
            for (i, s) in secrets.iter().enumerate() {
                b.add(&format!("s{i}"), &SecretValue::new(s.clone())).expect("add");
            }
            b.build()
        };
        let (sampled, full) = (build(true), build(false));
        // Every secret is at least 8 bytes, so every form is, and the sampler is used.
        prop_assert!(sampled.inner.sampler.is_some());
        prop_assert!(full.inner.sampler.is_none());
        let mut input = Vec::new();
        for (kind, which, filler) in &pieces {
            let s = &secrets[which % secrets.len()];
            input.extend_from_slice(filler.as_bytes());
            match kind {
                0 => input.extend_from_slice(s),
                1 => input.extend_from_slice(STANDARD.encode(s).as_bytes()),
                2 => input.extend_from_slice(hex::encode(s).as_bytes()),
                3 => input.extend_from_slice(&s.to_ascii_uppercase()),
                4 => input.extend(s.iter().enumerate().map(|(i, b)| {
                    if i % 2 == 0 { b.to_ascii_lowercase() } else { b.to_ascii_uppercase() }
                })),
                5 => input.extend_from_slice(&s[..s.len() / 2]),
                6 => {
                    // An ANSI colour sequence inside the secret: the skeleton path.
                    input.extend_from_slice(&s[..s.len() / 2]);
                    input.extend_from_slice(b"\x1b[31m");
                    input.extend_from_slice(&s[s.len() / 2..]);
                }
                _ => {}
            }
        }
        let want = full.redact(&input);
        let got = sampled.redact(&input);
        prop_assert_eq!(String::from_utf8_lossy(&got.output), String::from_utf8_lossy(&want.output));
        prop_assert_eq!((got.count, got.folded), (want.count, want.folded));
        let (streamed, count) = stream_with_sizes(&sampled, &input, &sizes);
        prop_assert_eq!(&streamed, &want.output);
        prop_assert_eq!(count, want.count);
        for s in &secrets {
            prop_assert!(!contains(&got.output, s));
        }
    }
}

#[test]
fn long_secrets_build_and_redact() {
    // PEM keys and JSON key files run to kilobytes; the automaton must stay buildable.
    let secret: Vec<u8> = (0..65_536).map(|i| b"FAKEpem0123456789"[i % 17]).collect();
    let r = redactor(&[("pem", &secret)]);
    let mut input = b"key: ".to_vec();
    input.extend_from_slice(&secret);
    input.extend_from_slice(b" end");
    let whole = r.redact(&input);
    assert_eq!(whole.output, b"key: [REDACTED:pem] end");
    assert_eq!(stream_in_chunks(&r, &input, 4096), (whole.output, 1));
}
