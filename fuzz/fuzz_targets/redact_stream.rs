//! Fuzzes the streaming redactor: arbitrary secrets, input and chunking.
//!
//! Input layout: byte 0 picks the number of secrets (1..=4); each secret is taken as the next
//! `8 + (len byte % 24)` bytes, made valid by prefixing `FAKE`; the next byte seeds the chunk
//! sizes; the rest is the haystack, into which a secret is also spliced. Checks: the stream
//! equals whole-buffer redaction, no raw secret survives, redaction is idempotent (for
//! secrets without tag or mask text in them), nothing panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use outloop_core::SecretValue;
use outloop_core::redact::{Redactor, RedactorBuilder};

fuzz_target!(|data: &[u8]| {
    let Some((&n, mut rest)) = data.split_first() else {
        return;
    };
    let mut secrets = Vec::new();
    for _ in 0..(n % 4 + 1) {
        let Some((&len, tail)) = rest.split_first() else {
            return;
        };
        let len = 8 + usize::from(len % 24);
        if tail.len() < len {
            return;
        }
        let mut s = b"FAKE".to_vec();
        s.extend_from_slice(&tail[..len]);
        secrets.push(s);
        rest = &tail[len..];
    }
    let Some((&seed, hay)) = rest.split_first() else {
        return;
    };
    let mut builder = RedactorBuilder::new();
    let mut added = Vec::new();
    for (i, s) in secrets.iter().enumerate() {
        if builder
            .add(&format!("s{i}"), &SecretValue::new(s.clone()))
            .is_ok()
        {
            added.push(s.clone());
        }
    }
    let redactor = builder.build();
    let mut input = hay.to_vec();
    if let Some(s) = added.first() {
        let at = usize::from(seed) % (input.len() + 1);
        input.splice(at..at, s.iter().copied());
    }

    let whole = redactor.redact(&input);
    let mut stream = redactor.stream();
    let mut out = Vec::new();
    let mut count = 0;
    let mut pos = 0;
    let mut size = usize::from(seed) + 1;
    while pos < input.len() {
        let end = (pos + size).min(input.len());
        count += stream.push(&input[pos..end], &mut out);
        pos = end;
        size = size * 7 % 257 + 1;
    }
    count += stream.finish(&mut out);
    assert_eq!(
        out, whole.output,
        "stream differs from whole-buffer redaction"
    );
    assert_eq!(count, whole.count);
    for s in &added {
        assert!(
            !whole.output.windows(s.len()).any(|w| w == s.as_slice()),
            "a raw secret survived"
        );
    }
    // Idempotence holds unless a secret itself contains tag or mask text, which a fuzzer
    // can construct on purpose; then the second pass must still leave no raw secret.
    let again = redactor.redact(&whole.output);
    let tag_like = added.iter().any(|s| {
        s.contains(&b'[')
            || s.windows(2)
                .any(|w| b"REDACTEDA".windows(2).any(|m| m == w))
    });
    if !tag_like {
        assert_eq!(again.output, whole.output, "not idempotent");
    }
});
