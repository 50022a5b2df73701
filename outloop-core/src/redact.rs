//! Redaction: replacing every known secret value, in every encoding, in everything that
//! leaves the broker.
//!
//! # Forms
//!
//! A [`RedactorBuilder`] takes each credential's secret value and derives the forms an upstream
//! may echo it in: raw bytes; base64 (standard and URL-safe, padded or not, at each of the
//! three byte alignments inside a longer encoded string, and of the value with a trailing
//! newline); hex in either case; percent-encoding (every raw/encoded combination of up to six
//! distinct punctuation bytes, either hex case, space as `%20` or `+`); JSON string escaping
//! (serde_json's, plus `\/`, HTML-safe `\u003c`, ASCII-only `\uXXXX`, and every
//! non-alphanumeric as `\u00XX`); HTML character references (named `&amp;` `&lt;` `&gt;`
//! `&quot;` with `'` as `&#39;`, `&#x27;` or `&apos;`, and all-numeric `&#NN;` / `&#xNN;`);
//! and, for values of ASCII letters and digits (and `-_.`), the whole value in any mix of
//! ASCII upper and lower case. Forms shorter than the floor are not searched for. A multi-line value also
//! registers its lines, and a JSON value its string leaves (see [`RedactorBuilder::add`]).
//!
//! Gap characters inserted inside a secret (C0 controls other than tab, LF and CR; DEL;
//! ANSI colour sequences `ESC [ … m`; zero-width U+200B–U+200D and U+FEFF) do not hide it:
//! when a haystack holds any, it is also searched with them removed, in segments between
//! gap runs of more than 32 bytes (so matches, and what a stream holds back, stay bounded).
//! Tab, LF and CR are not gaps: they separate tokens in nearly all text, except inside
//! line-wrapped base64: a line break (`\r\n` or `\n`) whose 40 preceding bytes are
//! standard-alphabet base64 and whose next byte is too is a gap, so a secret encoded in a MIME
//! body (RFC 2045, 76 columns) or a PEM block (RFC 7468, 64 columns) is found at any wrap
//! offset; a stream carries the base64 run of released input, so it decides each break as the
//! whole buffer does.
//!
//! # Matching and replacement
//!
//! The built [`SecretRedactor`] finds every occurrence of every form (one Aho-Corasick
//! automaton, leftmost-longest, built once, and a second, ASCII case-insensitive one for the
//! case-folded values), takes the union of the matched byte ranges, and
//! replaces each maximal run of overlapping matches once; touching but non-overlapping
//! matches are replaced separately. The run is named by the match that starts it (the
//! longest at that position), and replaced by:
//!
//! - `[REDACTED:<label>#<n>]` when it starts a JSON object key or array element (it follows
//!   a `"` that follows `{` or `,`): `n` counts such replacements from 1 in this buffer or
//!   stream, so two secret keys of one object never merge into one key;
//! - otherwise, for a base64 form, a mask of the same length in the base64 alphabet
//!   (`REDACTEDREDA…`, `=` padding kept, the character before padding `A`), so the payload
//!   around it still decodes to the same length (line breaks inside a masked run are kept and
//!   do not advance the mask); base64 forms with JSON-escaped slashes
//!   (`\/`) get the tag instead, since a mask would change their decoded length;
//! - otherwise `[REDACTED:<label>]`.
//!
//! Labels in tags keep ASCII letters, digits and `-_.:@/+`; other characters show as `_`, so
//! a tag is valid inside a JSON string, an HTML attribute, a header value or a URL.
//!
//! The automata do not read every byte: a sampling prefilter reads one 4- or 8-byte window
//! per stretch of input shorter than the shortest form, and the automata search only around
//! windows that occur in some form (every occurrence of a form contains a sampled window, so
//! nothing is missed; see `redact/sample.rs`). On text that holds no secret this is several
//! times faster than an automaton scan of every byte.
//!
//! A run hit only by case-folded forms is counted in [`Redacted::folded`], and a run of a
//! canary ([`RedactorBuilder::add_canary`]) names its tenant in [`Redacted::canaries`]: the
//! broker records both in the audit.
//!
//! # Streams
//!
//! The same result comes out of [`Redactor::redact`] on a whole buffer and out of a
//! [`RedactStream`] fed the buffer in chunks of any size: the stream holds back only the
//! longest tail of the input that could still begin a secret, and releases the rest of a
//! chunk in the same call. [`RedactReader`] and [`RedactWriter`] wrap tokio's `AsyncRead` and
//! `AsyncWrite` with a stream; both work on bytes (invalid UTF-8 and split characters pass
//! through) and redact the held tail at end of file or shutdown, never verbatim.
//!
//! ```
//! use outloop_core::redact::{Redactor, RedactorBuilder};
//! use outloop_core::SecretValue;
//!
//! let mut builder = RedactorBuilder::new();
//! builder.add("echo", &SecretValue::from_string("FAKE-token-123".into()))?;
//! let redactor = builder.build();
//!
//! let whole = redactor.redact(b"token=FAKE-token-123");
//! assert_eq!(whole.output, b"token=[REDACTED:echo]");
//! assert_eq!(whole.count, 1);
//!
//! let mut stream = redactor.stream();
//! let mut out = Vec::new();
//! stream.push(b"token=FAKE-to", &mut out);
//! stream.push(b"ken-123", &mut out);
//! stream.finish(&mut out);
//! assert_eq!(out, whole.output);
//! # Ok::<(), outloop_core::Error>(())
//! ```

mod firsts;
mod gaps;
mod io;
mod sample;
mod variants;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_mime;
#[cfg(test)]
mod tests_more;

use std::fmt;
use std::ops::Range;
use std::sync::Arc;
use std::time::SystemTime;

use aho_corasick::{AhoCorasick, AhoCorasickKind, Anchored, Input, MatchKind, StartKind};
use zeroize::{Zeroize, Zeroizing};

use crate::error::{Error, ErrorKind, Result};
use crate::secret::SecretValue;

pub use io::{DEFAULT_READ_CHUNK, RedactReader, RedactWriter};

use firsts::FirstBytes;
use gaps::Skeleton;
use sample::{QgramSet, Sampler};
use variants::Form;

/// The default floor: secrets (and derived forms) shorter than this many bytes are refused
/// or not searched for, since short patterns would redact ordinary text.
pub const DEFAULT_FLOOR: usize = 8;

/// Upper bound on the total bytes of all searched forms of all secrets in one redactor
/// (64 MiB), which keeps building the automaton within its limits.
pub const MAX_PATTERN_BYTES: usize = 64 << 20;

/// Up to this many bytes of forms in total, a redactor without a sampler (some form shorter
/// than 8 bytes) scans with a full DFA (fastest scan, about 1 KiB of memory per pattern byte
/// at worst); above it, or with a sampler, the automaton is a contiguous NFA (fast to build,
/// compact).
pub const DFA_PATTERN_BYTES: usize = 16 << 10;

/// [`Redactor::redact`] works through its input in slices of this many bytes (64 KiB), as a
/// stream would.
const WHOLE_CHUNK: usize = 64 << 10;

/// The base64-alphabet text a base64 form of a secret is masked with (repeated and cut to
/// the length of the replaced run; `=` padding is kept).
pub const BASE64_MASK: &[u8; 8] = b"REDACTED";

/// Replaces known secrets in bytes on their way out of the broker.
///
/// Object-safe: the broker holds an `Arc<dyn Redactor>` or a `Box<dyn Redactor>`.
pub trait Redactor: Send + Sync {
    /// Redacts a whole buffer.
    ///
    /// Takes any bytes (valid UTF-8 or not) and returns the redacted bytes with the number of
    /// replacements made (one per maximal run of overlapping secret matches) and what the
    /// audit needs to know (case-folded-only runs, canaries seen).
    fn redact(&self, input: &[u8]) -> Redacted;

    /// Redacts a whole buffer as [`Redactor::redact`] does, appending the output to `out`
    /// instead of allocating it, and returns what was found. A caller that redacts many
    /// buffers can keep one `out` and clear it between calls, so the output's memory is
    /// allocated (and its pages first touched) once.
    ///
    /// The default implementation calls [`Redactor::redact`] and moves its output.
    fn redact_into(&self, input: &[u8], out: &mut Vec<u8>) -> Findings {
        let Redacted {
            output,
            count,
            folded,
            canaries,
        } = self.redact(input);
        out.extend_from_slice(&output);
        Findings {
            count,
            folded,
            canaries,
        }
    }

    /// Starts a streaming session: an owned, `'static`, `Send` value that can be moved into an
    /// async stream and fed the input chunk by chunk. Its output, concatenated, equals
    /// [`Redactor::redact`] of the concatenated chunks.
    fn stream(&self) -> Box<dyn RedactStream + Send>;
}

/// The result of redacting a whole buffer.
///
/// Its `Debug` shows the redacted output, which holds no secret.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Redacted {
    /// The input with every secret replaced (see the module docs for the replacement forms).
    pub output: Vec<u8>,
    /// How many replacements were made (one per maximal run of overlapping matches).
    pub count: usize,
    /// How many of those runs were hit only by a case-folded form of a secret (the value
    /// with its letters in another case), never by an exact form: worth recording in the audit, since
    /// the upstream transformed the value.
    pub folded: usize,
    /// The tenants whose canary value (see [`RedactorBuilder::add_canary`]) was seen, each
    /// once, in the order the canaries were registered. Non-empty means "raise an alert".
    pub canaries: Vec<String>,
}

/// What a streaming session has found so far: see [`RedactStream::findings`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Findings {
    /// Replacements made (as [`Redacted::count`]).
    pub count: usize,
    /// Runs hit only by a case-folded form (as [`Redacted::folded`]).
    pub folded: usize,
    /// Tenants whose canary was seen (as [`Redacted::canaries`]).
    pub canaries: Vec<String>,
}

/// A streaming redaction session, started by [`Redactor::stream`].
///
/// Feed the input with [`push`](RedactStream::push), then call
/// [`finish`](RedactStream::finish) once at the end. After `finish` the session is empty
/// and may be reused for a new input.
pub trait RedactStream {
    /// Feeds one chunk of input.
    ///
    /// Appends to `out` every byte that can already be released, redacted; holds back only
    /// the longest tail that is a proper prefix of some searched form (plus nothing that
    /// could be emitted verbatim). Returns the number of replacements made by this call.
    fn push(&mut self, chunk: &[u8], out: &mut Vec<u8>) -> usize;

    /// Ends the input: redacts the held-back tail and appends it to `out` (never verbatim).
    /// Returns the number of replacements made by this call.
    fn finish(&mut self, out: &mut Vec<u8>) -> usize;

    /// Everything found since the session started (across reuse after `finish`): counts,
    /// case-folded-only runs and canaries seen. The default (for sessions that do not track
    /// them) reports nothing.
    fn findings(&self) -> Findings {
        Findings::default()
    }
}

/// One searched form: its bytes (zeroized on drop), whose secret it is and how it is replaced.
struct Pattern {
    bytes: Zeroizing<Vec<u8>>,
    label: usize,
    form: Form,
    /// Index into the canary tenants when the secret is a planted canary.
    canary: Option<usize>,
}

/// Collects secrets and builds a [`SecretRedactor`].
///
/// Each added value is checked and expanded into its searched forms right away; the floor
/// applies to values added after it is set.
pub struct RedactorBuilder {
    floor: usize,
    /// Credential names, in the order first added.
    labels: Vec<String>,
    /// Tenants with a canary, in the order first added.
    canaries: Vec<String>,
    /// Every searched form, in the order added.
    patterns: Vec<Pattern>,
    /// The lowercased values searched for case-insensitively, in the order added.
    folded: Vec<Pattern>,
    total_bytes: usize,
    /// Whether the built redactor uses the sampling prefilter (always, outside tests).
    sampling: bool,
}

impl Default for RedactorBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for RedactorBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedactorBuilder")
            .field("floor", &self.floor)
            .field("labels", &self.labels)
            .field("canary_tenants", &self.canaries)
            .field("patterns", &self.patterns.len())
            .field("folded", &self.folded.len())
            .finish()
    }
}

impl RedactorBuilder {
    /// An empty builder with the floor at [`DEFAULT_FLOOR`] (8 bytes).
    pub fn new() -> Self {
        Self {
            floor: DEFAULT_FLOOR,
            labels: Vec::new(),
            canaries: Vec::new(),
            patterns: Vec::new(),
            folded: Vec::new(),
            total_bytes: 0,
            sampling: true,
        }
    }

    /// Builds a redactor whose automata read every byte (no sampling prefilter): the model
    /// the sampled redactor is checked against.
    #[cfg(test)]
    pub(crate) fn without_sampling(mut self) -> Self {
        self.sampling = false;
        self
    }

    /// Sets the floor, in bytes: shorter secrets are refused and shorter derived forms
    /// (such as a base64 fragment) are not searched for. A floor of 0 acts as 1.
    /// Applies to values added afterwards.
    pub fn floor(mut self, bytes: usize) -> Self {
        self.floor = bytes.max(1);
        self
    }

    /// Registers a secret under `label`, the credential name; its replacement text is
    /// `[REDACTED:<label>]` (characters other than ASCII letters, digits and `-_.:@/+` shown
    /// as `_`, so the tag is valid inside a JSON string, a header value or a URL).
    ///
    /// The same label may be added several times (for example a token and its refresh
    /// token). When two secrets share a searched form, the one added first names it.
    /// A multi-line value (a PEM key, a JSON key file) also registers each of its lines
    /// (PEM `-----BEGIN/END` armour lines excepted) and, when it parses as JSON, each string
    /// leaf value, where those are at least the floor long and not punctuation only; such
    /// parts that fail those rules are skipped silently. Values over 10 kB are fine, up to
    /// the [`MAX_PATTERN_BYTES`] cap on all forms.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidSecret`], with a message naming the label and the rule (never the
    /// value), when the value is empty, shorter than the floor, made only of ASCII
    /// punctuation, whitespace or control characters, or when the redactor's forms would
    /// exceed [`MAX_PATTERN_BYTES`] in total. Nothing is registered on error.
    pub fn add(&mut self, label: &str, value: &SecretValue) -> Result<()> {
        self.register(label, value.expose_secret(), None)
    }

    /// Registers a rotated secret's old value under `label` while its grace period lasts:
    /// when `until` is still in the future (by the system clock, at this call) the value is
    /// registered as by [`RedactorBuilder::add`]; when it has passed, nothing is registered
    /// and `Ok(false)` is returned. Redactors are built per request, so each build checks the
    /// grace period afresh; a built redactor keeps redacting the old value for its lifetime.
    ///
    /// Returns whether the value was registered.
    ///
    /// # Errors
    ///
    /// As [`RedactorBuilder::add`], for a value inside its grace period.
    pub fn add_rotated(
        &mut self,
        label: &str,
        old: &SecretValue,
        until: SystemTime,
    ) -> Result<bool> {
        if SystemTime::now() >= until {
            return Ok(false);
        }
        self.add(label, old).map(|()| true)
    }

    /// Registers a canary for `tenant`: a planted fake value that no real request should
    /// ever see. It is redacted like a secret under `label` (so an agent cannot tell it
    /// from a real one), and every redaction result that met it names `tenant` in
    /// [`Redacted::canaries`] / [`Findings::canaries`], so the caller can raise an audit alert.
    ///
    /// # Errors
    ///
    /// As [`RedactorBuilder::add`].
    pub fn add_canary(&mut self, tenant: &str, label: &str, value: &SecretValue) -> Result<()> {
        let index = match self.canaries.iter().position(|t| t == tenant) {
            Some(i) => i,
            None => self.canaries.len(),
        };
        self.register(label, value.expose_secret(), Some(index))?;
        if index == self.canaries.len() {
            self.canaries.push(tenant.to_owned());
        }
        Ok(())
    }

    fn register(&mut self, label: &str, raw: &[u8], canary: Option<usize>) -> Result<()> {
        let refuse = |rule: String| {
            Err(Error::new(
                ErrorKind::InvalidSecret,
                format!("secret for credential `{label}` cannot be redacted: {rule}"),
            ))
        };
        if raw.is_empty() {
            return refuse("the value is empty".into());
        }
        if raw.len() < self.floor {
            return refuse(format!(
                "the value is {} bytes, shorter than the redaction floor of {} bytes",
                raw.len(),
                self.floor
            ));
        }
        if punctuation_only(raw) {
            return refuse(
                "the value is made only of punctuation, whitespace or control characters".into(),
            );
        }
        let mut forms = variants::forms(raw, self.floor);
        let mut folded: Vec<_> = variants::folded(raw).into_iter().collect();
        for part in variants::parts(raw) {
            if part.len() >= self.floor && !punctuation_only(&part) && part.as_slice() != raw {
                forms.extend(variants::forms(&part, self.floor));
                folded.extend(variants::folded(&part));
            }
        }
        let added: usize = forms.iter().map(|f| f.0.len()).sum::<usize>()
            + folded.iter().map(|f| f.len()).sum::<usize>();
        if self.total_bytes.saturating_add(added) > MAX_PATTERN_BYTES {
            return refuse(format!(
                "the redactor's secrets would exceed {MAX_PATTERN_BYTES} bytes of patterns"
            ));
        }
        let index = match self.labels.iter().position(|l| l == label) {
            Some(i) => i,
            None => {
                self.labels.push(label.to_owned());
                self.labels.len() - 1
            }
        };
        self.total_bytes += added;
        self.patterns
            .extend(forms.into_iter().map(|(bytes, form)| Pattern {
                bytes,
                label: index,
                form,
                canary,
            }));
        self.folded.extend(folded.into_iter().map(|bytes| Pattern {
            bytes,
            label: index,
            form: Form::Folded,
            canary,
        }));
        Ok(())
    }

    /// Builds the redactor: deduplicates the searched forms and compiles them into one
    /// automaton. A builder with no secrets gives a redactor that passes input through.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Internal`] when the automaton cannot be built; [`RedactorBuilder::add`]'s
    /// size cap keeps this from happening.
    pub fn try_build(self) -> Result<SecretRedactor> {
        let mut patterns = self.patterns;
        // Stable sort: among equal forms the one added first comes first and is kept.
        patterns.sort_by(|a, b| a.bytes.cmp(&b.bytes));
        patterns.dedup_by(|later, earlier| later.bytes == earlier.bytes);
        let mut folded = self.folded;
        folded.sort_by(|a, b| a.bytes.cmp(&b.bytes));
        folded.dedup_by(|later, earlier| later.bytes == earlier.bytes);

        let tags = self
            .labels
            .iter()
            .map(|l| {
                format!("[REDACTED:{}]", tag_label(l))
                    .into_bytes()
                    .into_boxed_slice()
            })
            .collect();
        let max_len = patterns
            .iter()
            .chain(&folded)
            .map(|p| p.bytes.len())
            .max()
            .unwrap_or(0);
        let mut first_bytes = FirstBytes::new();
        let mut pairs = vec![0u64; 1024].into_boxed_slice();
        let mut mark = |a: u8, b: Option<u8>| {
            first_bytes.insert(a);
            if let Some(b) = b {
                first_bytes.insert_second(b);
                let i = usize::from(a) << 8 | usize::from(b);
                pairs[i / 64] |= 1 << (i % 64);
            }
        };
        for p in &patterns {
            if let Some(&a) = p.bytes.first() {
                mark(a, p.bytes.get(1).copied());
            }
        }
        for p in &folded {
            if let Some(&a) = p.bytes.first() {
                for a in [a, a.to_ascii_uppercase()] {
                    let b = p.bytes.get(1).copied();
                    mark(a, b);
                    mark(a, b.map(|b| b.to_ascii_uppercase()));
                }
            }
        }
        let mut starts = QgramSet::with_capacity(4, patterns.len() + folded.len());
        for p in patterns.iter().chain(&folded).filter(|p| p.bytes.len() > 4) {
            starts.insert(&p.bytes);
        }
        // The sampler reads one window per stretch shorter than the shortest form; even for
        // one secret (some thirty forms) that beats aho-corasick's own SIMD prefilter plus
        // a second pass for the case-insensitive forms. Without a sampler (a form under 8
        // bytes), the automata scan with aho-corasick's prefilter.
        let sampler = Sampler::new(patterns.iter().chain(&folded).map(|p| p.bytes.as_slice()))
            .filter(|_| self.sampling);
        let automaton = compile(&patterns, false, sampler.is_none())?;
        let folded_automaton = compile(&folded, true, sampler.is_none())?;
        Ok(SecretRedactor {
            inner: Arc::new(Inner {
                automaton,
                folded_automaton,
                sampler,
                patterns,
                folded,
                labels: self.labels,
                canaries: self.canaries,
                tags,
                max_len,
                first_bytes,
                pairs,
                starts,
            }),
        })
    }

    /// Builds the redactor, as [`RedactorBuilder::try_build`].
    ///
    /// # Panics
    ///
    /// Only if the automaton cannot be built, which [`RedactorBuilder::add`]'s cap on total
    /// pattern size rules out.
    pub fn build(self) -> SecretRedactor {
        self.try_build()
            .expect("redaction automaton fits: add() caps the total pattern bytes")
    }
}

/// Compiles `patterns` into a leftmost-longest automaton (ASCII case-insensitive when
/// `fold`, with aho-corasick's own prefilter when `prefilter`), or `None` when there are none.
fn compile(patterns: &[Pattern], fold: bool, prefilter: bool) -> Result<Option<AhoCorasick>> {
    if patterns.is_empty() {
        return Ok(None);
    }
    let total: usize = patterns.iter().map(|p| p.bytes.len()).sum();
    AhoCorasick::builder()
        .match_kind(MatchKind::LeftmostLongest)
        // Anchored searches at the sampler's candidate starts; unanchored ones without it.
        .start_kind(StartKind::Both)
        .ascii_case_insensitive(fold)
        // With a sampler (no aho-corasick prefilter), the automaton only verifies the few
        // candidate starts the sampler flags, from a cold cache: a DFA's rows are hundreds of
        // bytes apart (2.8 MB for one secret's 29 forms), so walking a matched form missed
        // the cache at every byte, while the contiguous NFA keeps a form's chain of states
        // together in a compact table. Without a sampler it scans everything, where a DFA is
        // fastest; past the threshold, though, a DFA takes seconds to build (a 4 kB
        // PEM-sized secret has about 120 kB of forms), and aho-corasick's own choice is
        // still a DFA for few patterns, so the kind is chosen explicitly.
        .kind(Some(if prefilter && total <= DFA_PATTERN_BYTES {
            AhoCorasickKind::DFA
        } else {
            AhoCorasickKind::ContiguousNFA
        }))
        // With a sampler (redact/sample.rs) as the prefilter, aho-corasick's own would only
        // slow the anchored searches down.
        .prefilter(prefilter)
        .build(patterns.iter().map(|p| p.bytes.as_slice()))
        .map(Some)
        .map_err(|e| Error::internal(format!("building the redaction automaton: {e}")))
}

fn punctuation_only(raw: &[u8]) -> bool {
    raw.iter()
        .all(|b| b.is_ascii_punctuation() || b.is_ascii_whitespace() || b.is_ascii_control())
}

/// The label as shown in a tag: characters that need escaping in JSON, HTML, headers or
/// URLs (and the `#` used for key numbering) become `_`.
fn tag_label(label: &str) -> String {
    label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.:@/+".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The built-in [`Redactor`]: a fixed set of secrets compiled into one automaton.
///
/// Cheap to clone (the automaton is shared behind an `Arc`), `Send` and `Sync`. Its `Debug`
/// shows the labels and the number of searched forms, never a value.
#[derive(Clone)]
pub struct SecretRedactor {
    inner: Arc<Inner>,
}

impl fmt::Debug for SecretRedactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretRedactor")
            .field("labels", &self.inner.labels)
            .field("canary_tenants", &self.inner.canaries)
            .field("patterns", &self.inner.patterns.len())
            .finish()
    }
}

impl SecretRedactor {
    /// The credential names this redactor replaces, in the order first added.
    pub fn labels(&self) -> &[String] {
        &self.inner.labels
    }

    /// How many distinct forms (raw and encoded, and the case-insensitive ones) it searches
    /// for.
    pub fn pattern_count(&self) -> usize {
        self.inner.patterns.len() + self.inner.folded.len()
    }

    /// Counts the non-overlapping matches of a bare `find_iter` of this redactor's own
    /// automaton over `input`, replacing nothing: the speed limit the benchmarks compare
    /// redaction against (same patterns, same automaton). Not a redaction API.
    pub fn baseline_match_count(&self, input: &[u8]) -> usize {
        self.inner
            .automaton
            .as_ref()
            .map_or(0, |ac| ac.find_iter(input).count())
    }

    /// Builds a bare aho-corasick automaton over this redactor's exact forms with the
    /// crate's own defaults for leftmost-longest search (its choice of automaton kind, its
    /// prefilter on): the other baseline the benchmarks compare against. Not a redaction API.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Internal`] when aho-corasick cannot build it (its size limits).
    pub fn baseline_scanner(&self) -> Result<BaselineScanner> {
        AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .build(self.inner.patterns.iter().map(|p| p.bytes.as_slice()))
            .map(|ac| BaselineScanner { ac })
            .map_err(|e| Error::internal(format!("building the baseline automaton: {e}")))
    }

    /// Starts a streaming session with its concrete type (see [`Redactor::stream`]).
    pub fn stream_session(&self) -> SecretRedactStream {
        SecretRedactStream {
            inner: Arc::clone(&self.inner),
            held: Zeroizing::new(Vec::new()),
            sampled: Vec::new(),
            cursor: Cursor::default(),
            tally: Tally::default(),
        }
    }
}

impl Redactor for SecretRedactor {
    fn redact(&self, input: &[u8]) -> Redacted {
        let mut output = Vec::with_capacity(input.len());
        let findings = self.redact_into(input, &mut output);
        Redacted {
            output,
            count: findings.count,
            folded: findings.folded,
            canaries: findings.canaries,
        }
    }

    fn redact_into(&self, input: &[u8], out: &mut Vec<u8>) -> Findings {
        // A stream fed WHOLE_CHUNK slices: the same output by construction, and the work
        // that depends on the haystack's size stays local (a gap character or a wrapped
        // base64 line makes a skeleton of its own slice, not of the whole input).
        out.reserve(input.len());
        let mut stream = self.stream_session();
        for chunk in input.chunks(WHOLE_CHUNK) {
            stream.push(chunk, out);
        }
        stream.finish(out);
        stream.findings()
    }

    fn stream(&self) -> Box<dyn RedactStream + Send> {
        Box::new(self.stream_session())
    }
}

/// A bare aho-corasick automaton over a redactor's forms, built by
/// [`SecretRedactor::baseline_scanner`] for benchmarks. Its `Debug` shows no pattern.
pub struct BaselineScanner {
    ac: AhoCorasick,
}

impl fmt::Debug for BaselineScanner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BaselineScanner")
            .field("kind", &self.ac.kind())
            .field("patterns", &self.ac.patterns_len())
            .finish()
    }
}

impl BaselineScanner {
    /// Counts the non-overlapping leftmost-longest matches in `input` (`find_iter`),
    /// replacing nothing.
    pub fn match_count(&self, input: &[u8]) -> usize {
        self.ac.find_iter(input).count()
    }
}

/// Where [`Inner::find_in`] looks for matches.
enum Candidates {
    /// A position where a match may start: one anchored search there.
    At(usize),
    /// A stretch to scan, every match lying inside it.
    Scan(Range<usize>),
}

/// The shared, immutable part of a [`SecretRedactor`].
struct Inner {
    automaton: Option<AhoCorasick>,
    /// The ASCII case-insensitive automaton over `folded`.
    folded_automaton: Option<AhoCorasick>,
    /// Picks the parts of a haystack the automata must search, and the possible starts of a
    /// held tail; `None` (search everything) when some form is too short for sampling to pay
    /// off.
    sampler: Option<Sampler>,
    /// Searched forms sorted by bytes (pattern id = index).
    /// Sorted so "is this a prefix of some form" is a binary search.
    patterns: Vec<Pattern>,
    /// Lowercased values of letters and digits, searched case-insensitively, sorted by bytes
    /// (pattern id = `patterns.len()` + index).
    folded: Vec<Pattern>,
    labels: Vec<String>,
    canaries: Vec<String>,
    /// `[REDACTED:<label>]` per label.
    tags: Vec<Box<[u8]>>,
    /// Length of the longest form.
    max_len: usize,
    /// The bytes some form starts with.
    first_bytes: FirstBytes,
    /// Bitset over `a << 8 | b`: whether some form starts with the bytes `a b`.
    pairs: Box<[u64]>,
    /// The first 4 bytes of every form at least 5 bytes long, case-folded.
    starts: QgramSet,
}

/// What was found, accumulated over a buffer or a whole session.
#[derive(Debug, Default, Clone)]
struct Tally {
    count: usize,
    folded: usize,
    canary_seen: Vec<bool>,
}

/// The input just before the current haystack, enough to tell whether a match starts a JSON
/// object key (`{"` or `,"` with optional whitespace).
#[derive(Debug, Default, Clone, Copy)]
struct Context {
    /// The last byte before the haystack (0 at the start of input).
    last: u8,
    /// The last non-whitespace byte before the haystack.
    last_nonspace: u8,
    /// The last non-whitespace byte before `last`.
    nonspace_before_last: u8,
    /// How many base64-alphabet bytes (at most 40) end the input before the haystack: decides
    /// whether an early line break is a gap (see `gaps`, "Line-wrapped base64").
    base64_run: usize,
}

fn is_json_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

impl Context {
    /// Moves the context past `passed`, the bytes leaving the haystack's front.
    fn advance(&mut self, passed: &[u8]) {
        self.base64_run = gaps::base64_run_after(self.base64_run, passed);
        let Some((&last, before)) = passed.split_last() else {
            return;
        };
        let nonspace = |s: &[u8]| s.iter().rev().copied().find(|&b| !is_json_space(b));
        self.nonspace_before_last = nonspace(before).unwrap_or(self.last_nonspace);
        self.last_nonspace = nonspace(passed).unwrap_or(self.last_nonspace);
        self.last = last;
    }
}

/// Where a redaction pass stands, in positions relative to the current haystack.
#[derive(Debug, Default, Clone, Copy)]
struct Cursor {
    /// Bytes before this position have been written out (verbatim or replaced).
    emitted: usize,
    /// End of the last replaced run, while a later match starting before it could still
    /// extend it. When set, `emitted == open_end`.
    open_end: Option<usize>,
    /// The open run is being masked in the base64 alphabet; bytes masked so far.
    mask: Option<usize>,
    /// The open run has been hit only by case-folded forms so far.
    folded: bool,
    /// Replacements made in JSON key position so far (numbers their tags).
    keys: usize,
    context: Context,
}

/// Appends the base64-alphabet mask for `replaced`, starting `offset` bytes into the run:
/// `=` padding stays, and the character before padding is `A` (no stray low bits, so strict
/// decoders accept it). Line breaks (CR, LF) of wrapped base64 stay where they are and do
/// not advance the mask, so a wrapped payload is masked as its unwrapped form would be.
fn push_mask(replaced: &[u8], offset: usize, out: &mut Vec<u8>) {
    let is_break = |b: &u8| matches!(b, b'\r' | b'\n');
    let mut k = offset;
    for (i, &b) in replaced.iter().enumerate() {
        if is_break(&b) {
            out.push(b);
            continue;
        }
        out.push(if b == b'=' {
            b'='
        } else if replaced[i + 1..].iter().find(|c| !is_break(c)) == Some(&b'=') {
            b'A'
        } else {
            BASE64_MASK[k % BASE64_MASK.len()]
        });
        k += 1;
    }
}

impl Inner {
    fn findings(&self, tally: &Tally) -> Findings {
        Findings {
            count: tally.count,
            folded: tally.folded,
            canaries: self
                .canaries
                .iter()
                .zip(&tally.canary_seen)
                .filter(|(_, seen)| **seen)
                .map(|(t, _)| t.clone())
                .collect(),
        }
    }

    /// Writes to `out` the redacted form of `hay[cursor.emitted..limit]`, replacing every
    /// run of matches that starts before `limit` (a run may reach past `limit`; its end is
    /// left in `cursor`). Adds what it found to `tally`.
    ///
    /// Visits every position where some form matches, taking the longest match there, so the
    /// union of all matches is replaced even when secrets overlap or nest. With a skeleton
    /// (the haystack with gap characters removed), matches in the skeleton count too.
    #[allow(clippy::too_many_arguments)]
    fn process(
        &self,
        hay: &[u8],
        limit: usize,
        skeleton: Option<&Skeleton>,
        sampled: Option<&[Range<usize>]>,
        cursor: &mut Cursor,
        out: &mut Vec<u8>,
        tally: &mut Tally,
    ) {
        let mut found = Vec::new();
        match skeleton {
            None => {
                self.collect(hay, limit, sampled, &mut found);
                found.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
                for &(s, e, p) in &found {
                    self.on_match(hay, s, e, p, cursor, out, tally);
                }
            }
            Some(sk) => {
                self.collect(hay, limit, sampled, &mut found);
                for seg in sk.segments() {
                    let bytes = sk.bytes(seg.clone());
                    let mut local = Vec::new();
                    self.collect(bytes, bytes.len(), None, &mut local);
                    for (s, e, p) in local {
                        let (s, e) = sk.original(seg.start + s, seg.start + e);
                        if s < limit {
                            found.push((s, e, p));
                        }
                    }
                }
                found.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
                for (s, e, p) in found {
                    self.on_match(hay, s, e, p, cursor, out, tally);
                }
            }
        }
        if cursor.emitted < limit {
            out.extend_from_slice(&hay[cursor.emitted..limit]);
            cursor.emitted = limit;
        }
    }

    /// Appends to `found`, as `(start, end, pattern id)`, the longest match of each automaton
    /// at every position where one starts before `limit`: at the candidate starts of the
    /// sampler (`sampled`, when the caller has already sampled all of `hay` with
    /// [`Inner::sample`]), or without one by a scan of each automaton (with aho-corasick's
    /// own prefilter).
    fn collect(
        &self,
        hay: &[u8],
        limit: usize,
        sampled: Option<&[Range<usize>]>,
        found: &mut Vec<(usize, usize, usize)>,
    ) {
        let main = (&self.automaton, 0);
        let folded = (&self.folded_automaton, self.patterns.len());
        if let Some(sampler) = &self.sampler {
            let own: Vec<Range<usize>>;
            let ranges = match sampled {
                Some(ranges) => ranges,
                None => {
                    own = sampler.starts(hay, limit).collect();
                    &own
                }
            };
            for range in ranges {
                if range.start >= limit {
                    break;
                }
                for at in range.start..range.end.min(limit) {
                    if !self.may_start_form(hay, at) {
                        continue;
                    }
                    for which in [main, folded] {
                        self.find_in(hay, which, Candidates::At(at), limit, found);
                    }
                }
            }
            return;
        }
        for which in [main, folded] {
            self.find_in(hay, which, Candidates::Scan(0..hay.len()), limit, found);
        }
    }

    /// Appends to `found` the longest match of `ac` (whose pattern ids start at `base`) at
    /// every position among `candidates` where one starts before `limit`, as `(start, end,
    /// pattern id)`.
    fn find_in(
        &self,
        hay: &[u8],
        (ac, base): (&Option<AhoCorasick>, usize),
        candidates: Candidates,
        limit: usize,
        found: &mut Vec<(usize, usize, usize)>,
    ) {
        {
            let Some(ac) = ac else { return };
            match &candidates {
                &Candidates::At(at) => {
                    let input = Input::new(hay).range(at..).anchored(Anchored::Yes);
                    if at < limit
                        && let Some(m) = ac.find(input)
                    {
                        found.push((m.start(), m.end(), base + m.pattern().as_usize()));
                    }
                }
                Candidates::Scan(region) => {
                    let mut pos = region.start;
                    while pos < region.end.min(limit) {
                        let Some(m) = ac.find(Input::new(hay).range(pos..region.end)) else {
                            break;
                        };
                        if m.start() >= limit {
                            break;
                        }
                        found.push((m.start(), m.end(), base + m.pattern().as_usize()));
                        pos = m.start() + 1;
                    }
                }
            }
        }
    }

    /// The pattern with id `id` (see [`Inner::patterns`] and [`Inner::folded`]).
    fn pattern(&self, id: usize) -> &Pattern {
        self.patterns
            .get(id)
            .unwrap_or_else(|| &self.folded[id - self.patterns.len()])
    }

    /// Adds the match `hay[s..e]` of pattern `id` to the current run or starts a new one.
    #[allow(clippy::too_many_arguments)]
    fn on_match(
        &self,
        hay: &[u8],
        s: usize,
        e: usize,
        id: usize,
        cursor: &mut Cursor,
        out: &mut Vec<u8>,
        tally: &mut Tally,
    ) {
        let p = self.pattern(id);
        if let Some(c) = p.canary {
            if tally.canary_seen.len() <= c {
                tally.canary_seen.resize(c + 1, false);
            }
            tally.canary_seen[c] = true;
        }
        match cursor.open_end {
            Some(end) if s < end => {
                if e > end {
                    if let Some(done) = cursor.mask {
                        push_mask(&hay[end..e], done, out);
                        cursor.mask = Some(done + (e - end));
                    }
                    cursor.open_end = Some(e);
                }
                if cursor.folded && p.form != Form::Folded {
                    cursor.folded = false;
                    tally.folded = tally.folded.saturating_sub(1);
                }
            }
            _ => {
                out.extend_from_slice(&hay[cursor.emitted..s]);
                tally.count += 1;
                cursor.folded = p.form == Form::Folded;
                if cursor.folded {
                    tally.folded += 1;
                }
                cursor.mask = None;
                let tag = &self.tags[p.label];
                if starts_json_key(hay, s, &cursor.context) {
                    cursor.keys += 1;
                    out.extend_from_slice(&tag[..tag.len() - 1]);
                    out.extend_from_slice(format!("#{}]", cursor.keys).as_bytes());
                } else if p.form == Form::Base64 {
                    push_mask(&hay[s..e], 0, out);
                    cursor.mask = Some(e - s);
                } else {
                    out.extend_from_slice(tag);
                }
                cursor.open_end = Some(e);
            }
        }
        cursor.emitted = cursor.open_end.unwrap_or(cursor.emitted);
    }

    /// Replaces the contents of `ranges` with the sampler's candidate starts over all of
    /// `hay` (see [`Sampler::starts`]), in order; leaves it empty without a sampler.
    ///
    /// One pass serves both searches of a push: the ranges hold every start of an
    /// occurrence and every start of a proper prefix of a form, at least `min_len` long,
    /// that ends `hay`. Sampling the held tail's region in a pass of its own cost about 5%
    /// of a stream fed 4 KiB chunks.
    fn sample(&self, hay: &[u8], ranges: &mut Vec<Range<usize>>) {
        ranges.clear();
        if let Some(sampler) = &self.sampler {
            ranges.extend(sampler.starts(hay, hay.len()));
        }
    }

    /// The start of the longest suffix of `hay` that is a proper prefix of some form
    /// (directly, or in the skeleton with gap characters removed), or `hay.len()` when
    /// there is none. Input before it can never be part of a match that is still incomplete.
    /// `sampled` is `hay` sampled by [`Inner::sample`].
    fn hold_start(
        &self,
        hay: &[u8],
        skeleton: Option<&Skeleton>,
        sampled: &[Range<usize>],
    ) -> usize {
        let mut hold = self.prefix_start(hay, Some(sampled));
        if let Some(sk) = skeleton
            && sk.reaches_end()
            && let Some(seg) = sk.segments().last()
        {
            let bytes = sk.bytes(seg.clone());
            let at = self.prefix_start(bytes, None);
            if at < bytes.len() {
                hold = hold.min(sk.original(seg.start + at, seg.start + at + 1).0);
            }
        }
        hold
    }

    /// The start of the longest suffix of `hay` that is a proper prefix of some form, or
    /// `hay.len()`.
    ///
    /// A suffix at least as long as the shortest form holds one of the sampler's windows (see
    /// `redact/sample.rs`), so only the sampler's candidate starts are tried there: those of
    /// `sampled` (all of `hay` sampled by [`Inner::sample`]), or of the tail sampled here.
    /// The shorter suffixes are each tried with cheap byte tests before the exact one.
    fn prefix_start(&self, hay: &[u8], sampled: Option<&[Range<usize>]>) -> usize {
        let from = hay.len().saturating_sub(self.max_len.saturating_sub(1));
        let near = match &self.sampler {
            Some(sampler) => {
                // Suffixes of `min_len` bytes or more start before `near`.
                let near = hay.len().saturating_sub(sampler.min_len() - 1).max(from);
                let begins =
                    |&p: &usize| self.first_bytes.contains(hay[p]) && self.begins_form(hay, p);
                let found = match sampled {
                    Some(ranges) => {
                        let first = ranges.partition_point(|r| r.end <= from);
                        ranges[first..]
                            .iter()
                            .take_while(|r| r.start < near)
                            .flat_map(|r| r.start.max(from)..r.end.min(near))
                            .find(begins)
                    }
                    None => sampler
                        .starts(&hay[from..], near - from)
                        .flat_map(|r| r.start + from..r.end + from)
                        .find(begins),
                };
                if let Some(p) = found {
                    return p;
                }
                near
            }
            None => from,
        };
        // Up to 64 positions at a time: the first-byte test over a 64-byte window (the last
        // 64 bytes for the last positions), then the fuller test at the positions it leaves.
        for block in (near..hay.len()).step_by(64) {
            let end = (block + 64).min(hay.len());
            let window = block.min(hay.len().saturating_sub(64));
            let mut maybe = match hay[window..].first_chunk::<64>() {
                Some(bytes) => {
                    let bits = self.first_bytes.candidates(bytes) >> (block - window);
                    bits & u64::MAX >> (64 - (end - block))
                }
                // A haystack shorter than 64 bytes.
                None => self.first_bytes.exact_bits(&hay[block..end]),
            };
            while maybe != 0 {
                let p = block + maybe.trailing_zeros() as usize;
                maybe &= maybe - 1;
                if self.begins_form(hay, p) {
                    return p;
                }
            }
        }
        hay.len()
    }

    /// Whether a form of a sampled redactor (every form at least 8 bytes long) may start at
    /// `hay[at..]`: its first byte, its first two and its first four bytes begin some form,
    /// each test cheaper, and passed more often, than the next. Cheap next to the two
    /// anchored searches it spares most of the sampler's candidate positions.
    fn may_start_form(&self, hay: &[u8], at: usize) -> bool {
        let Some(&[a, b, ..]) = hay.get(at..at + 4) else {
            return false;
        };
        let pair = usize::from(a) << 8 | usize::from(b);
        self.first_bytes.contains(a)
            && self.pairs[pair / 64] & (1 << (pair % 64)) != 0
            && self.starts.contains(&hay[at..])
    }

    /// Whether `hay[p..]` (whose first byte begins some form) is a proper prefix of a form:
    /// cheap tests of its first two and four bytes, then the exact one.
    fn begins_form(&self, hay: &[u8], p: usize) -> bool {
        hay.get(p + 1).is_none_or(|&b| {
            let i = usize::from(hay[p]) << 8 | usize::from(b);
            self.pairs[i / 64] & (1 << (i % 64)) != 0
        })
            // A tail of 4 bytes or more can begin a form only with that form's first 4 bytes
            // (a form it is a proper prefix of is longer).
            && (hay.len() - p < 4 || self.starts.contains(&hay[p..]))
            && self.is_proper_prefix(&hay[p..])
    }

    /// Whether `s` is a proper prefix of some form, or, ignoring ASCII case, of some
    /// case-insensitive form.
    fn is_proper_prefix(&self, s: &[u8]) -> bool {
        // Forms with prefix `s` sit together from the first form not less than `s`; if that
        // one equals `s`, the next may be longer.
        let exact = || {
            let i = self.patterns.partition_point(|p| p.bytes.as_slice() < s);
            self.patterns[i..]
                .iter()
                .take(2)
                .any(|p| p.bytes.len() > s.len() && p.bytes.starts_with(s))
        };
        // The folded forms are lower case: compare with `s` lowercased on the fly (no copy
        // of what may be part of a secret).
        let folded = || {
            let lower = || s.iter().map(u8::to_ascii_lowercase);
            let i = self
                .folded
                .partition_point(|p| p.bytes.iter().copied().lt(lower()));
            self.folded[i..].iter().take(2).any(|p| {
                p.bytes.len() > s.len() && p.bytes.iter().copied().zip(lower()).all(|(a, b)| a == b)
            })
        };
        exact() || (!self.folded.is_empty() && folded())
    }
}

/// Whether a match at `hay[s..]` starts a JSON object key: it follows a `"` that follows
/// `{` or `,` (whitespace between allowed). `context` describes the input before `hay`.
fn starts_json_key(hay: &[u8], s: usize, context: &Context) -> bool {
    let (quote, before) = match s {
        0 => (context.last, context.nonspace_before_last),
        _ => (
            hay[s - 1],
            hay[..s - 1]
                .iter()
                .rev()
                .copied()
                .find(|&b| !is_json_space(b))
                .unwrap_or(context.last_nonspace),
        ),
    };
    quote == b'"' && matches!(before, b'{' | b',')
}

/// The streaming session of a [`SecretRedactor`]: see [`RedactStream`].
///
/// Owned and `'static`; holds at most one form's length minus one byte of input between
/// calls (more only when gap characters sit inside a possible secret), in a buffer zeroized
/// on drop. Its `Debug` shows only how many bytes it holds.
pub struct SecretRedactStream {
    inner: Arc<Inner>,
    /// Input not yet fully resolved; positions in `cursor` are relative to its start.
    held: Zeroizing<Vec<u8>>,
    /// The sampler's candidate starts in the haystack of the current push, kept so that
    /// pushes reuse one allocation.
    sampled: Vec<Range<usize>>,
    cursor: Cursor,
    tally: Tally,
}

impl fmt::Debug for SecretRedactStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretRedactStream")
            .field("held_bytes", &self.held.len())
            .finish_non_exhaustive()
    }
}

impl SecretRedactStream {
    /// Redacts and releases `hay` up to its hold point, returning the hold point; `cursor`
    /// is left relative to the hold point.
    fn release(
        inner: &Inner,
        hay: &[u8],
        sampled: &mut Vec<Range<usize>>,
        cursor: &mut Cursor,
        out: &mut Vec<u8>,
        tally: &mut Tally,
    ) -> usize {
        // Sampling first: its reads (one window per stride, each independent of the others)
        // bring a haystack that is not in cache in with many misses in flight at once, where
        // the gap pass reads it in order. A stream of 4 KiB chunks over 64 MiB of input ran
        // 35% faster this way round; in cache, the order makes no difference.
        inner.sample(hay, sampled);
        let skeleton = Skeleton::build_near(hay, cursor.context.base64_run, inner.max_len);
        let hold = inner.hold_start(hay, skeleton.as_ref(), sampled);
        inner.process(
            hay,
            hold,
            skeleton.as_ref(),
            Some(sampled),
            cursor,
            out,
            tally,
        );
        cursor.context.advance(&hay[..hold]);
        cursor.emitted -= hold;
        cursor.open_end = cursor
            .open_end
            .and_then(|end| end.checked_sub(hold))
            .filter(|&e| e > 0);
        hold
    }

    /// Everything found since the session started, as [`RedactStream::findings`].
    pub fn findings(&self) -> Findings {
        self.inner.findings(&self.tally)
    }
}

/// Appends `data` to a zeroizing buffer without leaving a copy in a freed allocation.
fn extend_zeroizing(buf: &mut Zeroizing<Vec<u8>>, data: &[u8]) {
    let needed = buf.len() + data.len();
    if needed > buf.capacity() {
        let mut grown = Zeroizing::new(Vec::with_capacity(needed.max(buf.capacity() * 2)));
        grown.extend_from_slice(buf);
        *buf = grown;
    }
    buf.extend_from_slice(data);
}

impl RedactStream for SecretRedactStream {
    fn push(&mut self, chunk: &[u8], out: &mut Vec<u8>) -> usize {
        if chunk.is_empty() {
            return 0;
        }
        let before = self.tally.count;
        if self.held.is_empty() {
            // Nothing held: search the chunk in place and keep only its tail.
            let hold = Self::release(
                &self.inner,
                chunk,
                &mut self.sampled,
                &mut self.cursor,
                out,
                &mut self.tally,
            );
            extend_zeroizing(&mut self.held, &chunk[hold..]);
        } else {
            extend_zeroizing(&mut self.held, chunk);
            let hold = Self::release(
                &self.inner,
                &self.held,
                &mut self.sampled,
                &mut self.cursor,
                out,
                &mut self.tally,
            );
            // Zero the released bytes before they slide out of the live part of the buffer,
            // when a secret was among them; bytes released verbatim are in the output anyway.
            if self.tally.count != before {
                self.held[..hold].zeroize();
            }
            self.held.drain(..hold);
        }
        self.tally.count - before
    }

    fn finish(&mut self, out: &mut Vec<u8>) -> usize {
        let before = self.tally.count;
        let skeleton = Skeleton::build_near(
            &self.held,
            self.cursor.context.base64_run,
            self.inner.max_len,
        );
        self.inner.process(
            &self.held,
            self.held.len(),
            skeleton.as_ref(),
            None,
            &mut self.cursor,
            out,
            &mut self.tally,
        );
        self.held.zeroize();
        self.cursor = Cursor::default();
        self.tally.count - before
    }

    fn findings(&self) -> Findings {
        SecretRedactStream::findings(self)
    }
}
