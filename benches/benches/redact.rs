//! Redaction throughput against baselines measured in the same run:
//!
//! - `baseline_find_iter`: a bare aho-corasick `find_iter` over the redactor's own patterns
//!   (every variant of every secret, the same automaton), counting matches and replacing
//!   nothing; and `baseline_find_iter_default`, the same patterns in an automaton built with
//!   aho-corasick's own defaults (its choice of DFA or NFA, its prefilter on), up to 100
//!   secrets (a DFA over 1,000 secrets' forms takes too long to build): the practical limit of
//!   a matcher that reads every byte;
//! - `baseline_naive_replace`: a loop of `str::replace` per secret and per common variant
//!   (raw, base64 four ways, hex two ways, JSON-escaped), what comparable tools do. Run on
//!   1 MiB with 1 and 100 secrets only (with 1,000 it takes seconds per iteration).
//!
//! - `baseline_copy_4k` (100 secrets only: it does not depend on them): copying the input into
//!   a reused buffer 4 KiB at a time, searching nothing: the memory-bandwidth floor;
//!   `baseline_copy_fresh` (64 MiB only): copying it into a freshly allocated buffer, the floor
//!   of any call that returns its output in a new allocation, as `Redactor::redact` does.
//!
//! Inputs: realistic JSON API responses and log text, 1 MiB and (for 100 secrets) 64 MiB,
//! with a registered secret echoed in some encoding every ~64 KiB. `outloop_whole` redacts the
//! buffer in one call (`Redactor::redact`, which allocates the output); `outloop_whole_into`
//! does the same into a reused output buffer (`Redactor::redact_into`); `outloop_stream_4k`
//! feeds the buffer to a stream in 4 KiB chunks, output buffer reused; on 64 MiB,
//! `outloop_stream_4k_drained` does the same but clears the output after every push, as the
//! product's readers, writers and proxy hand each push's output on.
//!
//! Last, `bench_paired` measures the ratios of the targets in pairs on 1 MiB: each of 150
//! rounds times `redact_into`, the 4 KiB stream and both bare scans back to back, and it
//! prints the minimum and median of each and their ratios (lines starting `paired`). This
//! machine's speed drifts over seconds, which moves criterion's one-after-another means.
//!
//! Run: `cargo bench -p outloop-benches --bench redact` (see `benches/README.md`); the paired
//! lines alone: `cargo bench -p outloop-benches --bench redact -- paired` (the filter matches
//! no criterion benchmark; the paired rounds run regardless).

// `criterion_group!` generates an undocumented function.
#![allow(missing_docs)]
// The bench prints its setup (pattern and replacement counts) next to criterion's output.
#![allow(clippy::print_stderr)]

use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use outloop_core::SecretValue;
use outloop_core::redact::{RedactStream, Redactor, RedactorBuilder, SecretRedactor};

/// A small deterministic generator (xorshift64*), so runs are comparable.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn token(&mut self, len: usize) -> String {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        (0..len)
            .map(|_| char::from(ALPHABET[self.below(ALPHABET.len())]))
            .collect()
    }
}

/// `n` API-token-like secrets of 38 to 54 bytes (`FAKE_pat-NNNN-` and 24 to 40 letters and
/// digits).
fn secrets(n: usize) -> Vec<String> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    (0..n)
        .map(|i| {
            let len = 24 + rng.below(17);
            format!("FAKE_pat-{i:04}-{}", rng.token(len))
        })
        .collect()
}

/// A secret as an upstream might echo it (the redactor searches all of these).
fn echoed(secret: &str, k: usize) -> String {
    match k % 4 {
        0 => secret.to_owned(),
        1 => b64(secret.as_bytes(), true),
        2 => secret.bytes().map(|b| format!("{b:02x}")).collect(),
        _ => json_u_escape(secret),
    }
}

/// Every character but letters and digits as `\u00XX` (one of the JSON styles searched).
fn json_u_escape(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_string()
            } else {
                format!("\\u{:04x}", u32::from(c))
            }
        })
        .collect()
}

fn b64(bytes: &[u8], pad: bool) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in bytes.chunks(3) {
        let n = c
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..=c.len() {
            out.push(char::from(A[(n >> (18 - 6 * i) & 63) as usize]));
        }
        if pad {
            out.extend(std::iter::repeat_n('=', 3 - c.len()));
        }
    }
    out
}

/// JSON API responses (a CRM contacts page) of about `size` bytes.
fn json_body(size: usize, secrets: &[String]) -> Vec<u8> {
    let mut rng = Rng(7);
    let mut out = Vec::with_capacity(size + 1024);
    out.extend_from_slice(b"{\"results\":[");
    let mut i = 0usize;
    let mut next_secret = 32 << 10;
    while out.len() < size {
        let note = if out.len() >= next_secret {
            next_secret += 64 << 10;
            echoed(&secrets[i % secrets.len()], i)
        } else {
            format!("Called on {}; follow up next week", rng.below(28) + 1)
        };
        out.extend_from_slice(
            format!(
                "{{\"id\":\"{}\",\"properties\":{{\"email\":\"user{i}@example.com\",\"firstname\":\"Ada\",\"lastname\":\"Lovelace\",\"company\":\"Analytical Engines Ltd\",\"phone\":\"+44 20 7946 {:04}\",\"createdate\":\"2026-11-{:02}T03:37:00.000Z\",\"hs_object_id\":\"{}\",\"note\":\"{note}\"}},\"createdAt\":\"2026-11-30T03:37:00.000Z\",\"archived\":false,\"url\":\"https://api.example.com/crm/v3/objects/contacts/{}\"}},",
                100_000 + i,
                rng.below(10_000),
                rng.below(28) + 1,
                100_000 + i,
                100_000 + i
            )
            .as_bytes(),
        );
        i += 1;
    }
    out.extend_from_slice(b"{}],\"paging\":{\"next\":{\"after\":\"200\"}}}");
    out
}

/// Service log text (request lines with latencies, user agents, occasional warnings).
fn log_text(size: usize, secrets: &[String]) -> Vec<u8> {
    let mut rng = Rng(11);
    let mut out = Vec::with_capacity(size + 1024);
    let mut i = 0usize;
    let mut next_secret = 32 << 10;
    let paths = [
        "/v3/contacts",
        "/v1/campaigns/42/stats",
        "/oauth/token",
        "/health",
    ];
    while out.len() < size {
        if out.len() >= next_secret {
            next_secret += 64 << 10;
            out.extend_from_slice(
                format!(
                    "2026-11-30T03:37:{:02}.{:03}Z WARN  upstream echoed credential token={}\n",
                    rng.below(60),
                    rng.below(1000),
                    echoed(&secrets[i % secrets.len()], i)
                )
                .as_bytes(),
            );
        }
        out.extend_from_slice(
            format!(
                "2026-11-30T03:37:{:02}.{:03}Z INFO  request_id={:016x} method=GET path={} status=200 latency_ms={} bytes={} ua=\"Mozilla/5.0 (X11; Linux x86_64) outloop-agent/0.1\"\n",
                rng.below(60),
                rng.below(1000),
                rng.next(),
                paths[rng.below(paths.len())],
                rng.below(900) + 3,
                rng.below(50_000)
            )
            .as_bytes(),
        );
        i += 1;
    }
    out
}

fn redactor(secrets: &[String]) -> SecretRedactor {
    let mut b = RedactorBuilder::new();
    for (i, s) in secrets.iter().enumerate() {
        b.add(&format!("s{i}"), &SecretValue::from_string(s.clone()))
            .expect("valid secret");
    }
    b.build()
}

/// The naive approach: one `replace` pass per secret and per common variant.
fn naive_forms(secrets: &[String]) -> Vec<(String, String)> {
    let mut forms = Vec::new();
    for (i, s) in secrets.iter().enumerate() {
        let tag = format!("[REDACTED:s{i}]");
        let hex: String = s.bytes().map(|b| format!("{b:02x}")).collect();
        for f in [
            s.clone(),
            b64(s.as_bytes(), true),
            b64(s.as_bytes(), false),
            b64(s.as_bytes(), true).replace('+', "-").replace('/', "_"),
            b64(s.as_bytes(), false).replace('+', "-").replace('/', "_"),
            hex.clone(),
            hex.to_uppercase(),
            json_u_escape(s),
        ] {
            forms.push((f, tag.clone()));
        }
    }
    forms
}

fn naive(forms: &[(String, String)], input: &str) -> String {
    let mut out = input.to_owned();
    for (form, tag) in forms {
        out = out.replace(form.as_str(), tag);
    }
    out
}

fn stream_4k(r: &SecretRedactor, input: &[u8], out: &mut Vec<u8>) -> usize {
    out.clear();
    let mut s = r.stream_session();
    let mut n = 0;
    for chunk in input.chunks(4096) {
        n += s.push(chunk, out);
    }
    n + s.finish(out)
}

/// As [`stream_4k`], clearing `out` after every push (its bytes handed on, as a reader or
/// writer does): returns the secrets found and the number of bytes written.
fn stream_4k_drained(r: &SecretRedactor, input: &[u8], out: &mut Vec<u8>) -> (usize, usize) {
    let mut s = r.stream_session();
    let (mut found, mut written) = (0, 0);
    for chunk in input.chunks(4096) {
        out.clear();
        found += s.push(chunk, out);
        written += std::hint::black_box(&*out).len();
    }
    out.clear();
    found += s.finish(out);
    (found, written + out.len())
}

fn bench_size(c: &mut Criterion, size: usize, counts: &[usize], with_naive: bool) {
    let mib = size >> 20;
    for (kind, make) in [
        ("json", json_body as fn(usize, &[String]) -> Vec<u8>),
        ("log", log_text),
    ] {
        let mut group = c.benchmark_group(format!("redact_{mib}MiB_{kind}"));
        group.sample_size(if mib > 1 { 10 } else { 20 });
        group.warm_up_time(Duration::from_millis(300));
        group.measurement_time(Duration::from_secs(if mib > 1 { 4 } else { 2 }));
        for &n in counts {
            let secrets = secrets(n);
            let input = make(size, &secrets);
            let r = redactor(&secrets);
            // Sanity: every echoed secret is found, and streaming agrees with whole-buffer.
            let whole = r.redact(&input);
            assert!(
                whole.count >= size / (64 << 10),
                "secrets were echoed and found: {} of {}",
                whole.count,
                size / (64 << 10)
            );
            let mut out = Vec::with_capacity(input.len());
            assert_eq!(stream_4k(&r, &input, &mut out), whole.count);
            assert!(out == whole.output, "stream equals whole");
            eprintln!(
                "{kind} {mib} MiB, {n} secrets: {} patterns, {} replacements",
                r.pattern_count(),
                whole.count
            );

            group.throughput(Throughput::Bytes(input.len() as u64));
            group.bench_with_input(BenchmarkId::new("outloop_whole", n), &input, |b, i| {
                b.iter(|| r.redact(i).count)
            });
            group.bench_with_input(BenchmarkId::new("outloop_whole_into", n), &input, |b, i| {
                b.iter(|| {
                    out.clear();
                    r.redact_into(i, &mut out).count
                })
            });
            group.bench_with_input(BenchmarkId::new("outloop_stream_4k", n), &input, |b, i| {
                b.iter(|| stream_4k(&r, i, &mut out))
            });
            if mib > 1 {
                // The output taken away after every push, as `RedactingReader`,
                // `RedactingWriter` and the alias proxy do: the output stays in cache, where
                // `outloop_stream_4k` writes 64 MiB into one buffer.
                let mut drained = Vec::with_capacity(8192);
                assert_eq!(
                    stream_4k_drained(&r, &input, &mut drained),
                    (whole.count, whole.output.len()),
                    "a drained stream finds and writes what whole-buffer redaction does"
                );
                group.bench_with_input(
                    BenchmarkId::new("outloop_stream_4k_drained", n),
                    &input,
                    |b, i| b.iter(|| stream_4k_drained(&r, i, &mut drained)),
                );
            }
            group.bench_with_input(BenchmarkId::new("baseline_find_iter", n), &input, |b, i| {
                b.iter(|| r.baseline_match_count(i))
            });
            if n == 100 {
                // The memory floor: copying the input into a reused output buffer in 4 KiB
                // chunks, as a stream writes it, with no search at all.
                group.bench_with_input(BenchmarkId::new("baseline_copy_4k", n), &input, |b, i| {
                    b.iter(|| {
                        out.clear();
                        for chunk in i.chunks(4096) {
                            out.extend_from_slice(chunk);
                        }
                        out.len()
                    })
                });
            }
            if n == 100 && mib > 1 {
                // What `Redactor::redact` pays before any search: a fresh output buffer the
                // size of the input, copied into (its pages are touched for the first time).
                group.bench_with_input(
                    BenchmarkId::new("baseline_copy_fresh", n),
                    &input,
                    |b, i| {
                        // Returned, so criterion keeps it (and drops it, as a caller of
                        // `redact` would).
                        b.iter(|| {
                            let mut fresh = Vec::with_capacity(i.len());
                            fresh.extend_from_slice(i);
                            fresh
                        })
                    },
                );
            }
            if n <= 100 {
                let scanner = r.baseline_scanner().expect("baseline automaton builds");
                eprintln!("{kind} {mib} MiB, {n} secrets: aho-corasick's default: {scanner:?}");
                group.bench_with_input(
                    BenchmarkId::new("baseline_find_iter_default", n),
                    &input,
                    |b, i| b.iter(|| scanner.match_count(i)),
                );
            }
            if with_naive && n <= 100 {
                let forms = naive_forms(&secrets);
                let text = String::from_utf8(input.clone()).expect("generated text is UTF-8");
                group.bench_with_input(
                    BenchmarkId::new("baseline_naive_replace", n),
                    &text,
                    |b, t| b.iter(|| naive(&forms, t).len()),
                );
            }
        }
        group.finish();
    }
}

/// Time to release one 4 KiB chunk that holds no possible secret prefix: the added wait.
fn bench_first_byte(c: &mut Criterion) {
    let secrets = secrets(100);
    let r = redactor(&secrets);
    let input = json_body(1 << 20, &secrets);
    let mut s = r.stream_session();
    let mut out = Vec::with_capacity(8192);
    // The longest chunk of at most 4 KiB whose last bytes begin no secret form.
    let chunk = (1..=4096)
        .rev()
        .map(|len| &input[..len])
        .find(|chunk| {
            out.clear();
            r.stream_session().push(chunk, &mut out);
            out.len() == chunk.len()
        })
        .expect("some chunk ends outside any secret prefix");
    let mut group = c.benchmark_group("redact_first_byte");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(1));
    group.throughput(Throughput::Bytes(chunk.len() as u64));
    group.bench_function("push_4k_chunk_released_whole_100", |b| {
        b.iter(|| {
            out.clear();
            s.push(chunk, &mut out)
        })
    });
    group.finish();
}

/// The ratios of the targets measured in pairs: this machine's speed drifts by tens of
/// percent over seconds (other virtual machines share it), so benchmarks run one after the
/// other, as criterion runs them, can land in different phases. Here each round times every
/// contestant once, back to back, over `ROUNDS` rounds; the minimum of each (the least
/// disturbed run) and the median are printed, with the ratios of the targets.
fn bench_paired(_: &mut Criterion) {
    const ROUNDS: usize = 150;
    // Each contestant runs twice and the second run is timed, so that none pays for the
    // caches the one before it left (criterion, too, times back-to-back iterations).
    let time = |f: &mut dyn FnMut() -> usize| {
        std::hint::black_box(f());
        let start = Instant::now();
        std::hint::black_box(f());
        start.elapsed().as_secs_f64()
    };
    for (kind, make) in [
        ("json", json_body as fn(usize, &[String]) -> Vec<u8>),
        ("log", log_text),
    ] {
        for n in [1, 100, 1000] {
            let secrets = secrets(n);
            let input = make(1 << 20, &secrets);
            let r = redactor(&secrets);
            // aho-corasick's defaults up to 100 secrets (as in the criterion groups).
            let scanner = (n <= 100).then(|| r.baseline_scanner().expect("automaton builds"));
            let mut out = Vec::with_capacity(input.len());
            let mut times = [const { Vec::new() }; 4];
            for _ in 0..ROUNDS {
                times[0].push(time(&mut || {
                    out.clear();
                    r.redact_into(&input, &mut out).count
                }));
                times[1].push(time(&mut || stream_4k(&r, &input, &mut out)));
                times[2].push(time(&mut || r.baseline_match_count(&input)));
                if let Some(sc) = &scanner {
                    times[3].push(time(&mut || sc.match_count(&input)));
                }
            }
            for t in &mut times {
                t.sort_by(f64::total_cmp);
            }
            // Contestant `i`'s minimum (`at` 0) or median (`at` ROUNDS / 2), in seconds.
            let get = |i: usize, at: usize| times[i].get(at).copied().unwrap_or(f64::INFINITY);
            // The faster bare scan: the redactor's own automaton or aho-corasick's defaults.
            let bare = |at: usize| get(2, at).min(get(3, at));
            let (min, median) = (0, ROUNDS / 2);
            let mb = |t: f64| input.len() as f64 / t / 1e6;
            eprintln!(
                "paired 1 MiB {kind} {n} secrets: whole_into {:.0} MB/s, stream 4K {:.0} MB/s, \
                 faster bare scan {:.0} MB/s (minimum of {ROUNDS}); whole vs bare {:.2}x \
                 (medians {:.2}x), stream vs whole {:.2}x (medians {:.2}x)",
                mb(get(0, min)),
                mb(get(1, min)),
                mb(bare(min)),
                get(0, min) / bare(min),
                get(0, median) / bare(median),
                get(1, min) / get(0, min),
                get(1, median) / get(0, median),
            );
        }
    }
}

fn bench(c: &mut Criterion) {
    bench_size(c, 1 << 20, &[1, 100, 1000], true);
    bench_size(c, 64 << 20, &[100], false);
    bench_first_byte(c);
    bench_paired(c);
}

criterion_group!(benches, bench);
criterion_main!(benches);
