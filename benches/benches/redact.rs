//! Redaction throughput against a baseline measured in the same run: a bare aho-corasick
//! `find_iter` over the raw secret values (the practical limit of any literal matcher).
//!
//! Run: `cargo bench -p outloop-benches --bench redact`. Criterion reports MiB/s for both;
//! the ratio of the two medians is the redactor's cost over the bare scan.

// `criterion_group!` generates an undocumented function.
#![allow(missing_docs)]

use aho_corasick::{AhoCorasick, MatchKind};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use outloop_core::SecretValue;
use outloop_core::redact::{Redactor, RedactorBuilder};

/// A realistic JSON API response body of about `size` bytes with one secret echoed per ~64 KiB.
fn json_body(size: usize, secrets: &[String]) -> Vec<u8> {
    let mut out = Vec::with_capacity(size + 256);
    out.extend_from_slice(b"{\"results\":[");
    let mut i = 0usize;
    while out.len() < size {
        let echoed = if i.is_multiple_of(256) {
            secrets[i % secrets.len()].as_str()
        } else {
            "n/a"
        };
        out.extend_from_slice(
            format!(
                "{{\"id\":\"{i}\",\"properties\":{{\"email\":\"user{i}@example.com\",\"firstname\":\"Ada\",\"lastmodifieddate\":\"2026-11-30T03:37:00.000Z\",\"note\":\"{echoed}\"}},\"archived\":false}},"
            )
            .as_bytes(),
        );
        i += 1;
    }
    out.extend_from_slice(b"{}]}");
    out
}

fn secrets(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("FAKE-bench-secret-{i:04}-Zq9xT7"))
        .collect()
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("redact_1MiB_json");
    for n in [1usize, 100] {
        let secrets = secrets(n);
        let input = json_body(1 << 20, &secrets);
        group.throughput(Throughput::Bytes(input.len() as u64));

        let mut b = RedactorBuilder::new();
        for (i, s) in secrets.iter().enumerate() {
            b.add(&format!("s{i}"), &SecretValue::from_string(s.clone()))
                .expect("valid secret");
        }
        let redactor = b.build();
        group.bench_with_input(BenchmarkId::new("outloop", n), &input, |bench, input| {
            bench.iter(|| redactor.redact(input).count)
        });

        let baseline = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .build(&secrets)
            .expect("patterns build");
        group.bench_with_input(
            BenchmarkId::new("baseline_aho_corasick_find_iter", n),
            &input,
            |bench, input| bench.iter(|| baseline.find_iter(input.as_slice()).count()),
        );
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
