//! Redaction: replacing every known secret value, in every encoding, in everything that
//! leaves the broker.
//!
//! A [`RedactorBuilder`] takes each credential's secret value and derives the forms an upstream
//! may echo it in: raw bytes; base64 (standard and URL-safe, padded or not, at each of the
//! three byte alignments inside a longer encoded string); hex in either case; percent-encoding
//! (RFC 3986 and form style, either hex case, space as `%20` or `+`); and JSON string escaping
//! (serde_json's, plus `\/`, HTML-safe `\u003c`, ASCII-only `\uXXXX`, and every
//! non-alphanumeric as `\u00XX`). Forms shorter than the floor are not searched for.
//!
//! The built [`SecretRedactor`] finds every occurrence of every form (one Aho-Corasick
//! automaton, leftmost-longest, built once), takes the union of the matched byte ranges, and
//! replaces each maximal run of overlapping matches by one `[REDACTED:<label>]`, where
//! `<label>` is the credential name of the match that starts the run (the longest match at
//! that position). Touching but non-overlapping matches are replaced separately.
//!
//! The same result comes out of [`Redactor::redact`] on a whole buffer and out of a
//! [`RedactStream`] fed the buffer in chunks of any size: the stream holds back only the
//! longest tail of the input that could still begin a secret.
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

mod variants;

#[cfg(test)]
mod tests;

use std::fmt;
use std::sync::Arc;

use aho_corasick::{AhoCorasick, AhoCorasickKind, Input, MatchKind};

/// Above this many bytes of patterns the automaton is a contiguous NFA instead of a DFA.
const DFA_PATTERN_BYTES: usize = 16 * 1024;
use zeroize::Zeroizing;

use crate::error::{Error, ErrorKind, Result};
use crate::secret::SecretValue;

/// The default floor: secrets (and derived forms) shorter than this many bytes are refused
/// or not searched for, since short patterns would redact ordinary text.
pub const DEFAULT_FLOOR: usize = 8;

/// Upper bound on the total bytes of all searched forms of all secrets in one redactor
/// (64 MiB), which keeps building the automaton within its limits.
pub const MAX_PATTERN_BYTES: usize = 64 << 20;

/// Replaces known secrets in bytes on their way out of the broker.
///
/// Object-safe: the broker holds an `Arc<dyn Redactor>` or a `Box<dyn Redactor>`.
pub trait Redactor: Send + Sync {
    /// Redacts a whole buffer.
    ///
    /// Takes any bytes (valid UTF-8 or not) and returns the redacted bytes with the number of
    /// replacements made (one per maximal run of overlapping secret matches).
    fn redact(&self, input: &[u8]) -> Redacted;

    /// Starts a streaming session: an owned, `'static`, `Send` value that can be moved into an
    /// async stream and fed the input chunk by chunk. Its output, concatenated, equals
    /// [`Redactor::redact`] of the concatenated chunks.
    fn stream(&self) -> Box<dyn RedactStream + Send>;
}

/// The result of redacting a whole buffer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Redacted {
    /// The input with every secret replaced by `[REDACTED:<label>]`.
    pub output: Vec<u8>,
    /// How many replacements were made.
    pub count: usize,
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
}

/// Collects secrets and builds a [`SecretRedactor`].
///
/// Each added value is checked and expanded into its searched forms right away; the floor
/// applies to values added after it is set.
pub struct RedactorBuilder {
    floor: usize,
    /// Credential names, in the order first added.
    labels: Vec<String>,
    /// Every searched form with the index of its label, in the order added.
    patterns: Vec<(Zeroizing<Vec<u8>>, usize)>,
    total_bytes: usize,
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
            .field("patterns", &self.patterns.len())
            .finish()
    }
}

impl RedactorBuilder {
    /// An empty builder with the floor at [`DEFAULT_FLOOR`] (8 bytes).
    pub fn new() -> Self {
        Self {
            floor: DEFAULT_FLOOR,
            labels: Vec::new(),
            patterns: Vec::new(),
            total_bytes: 0,
        }
    }

    /// Sets the floor, in bytes: shorter secrets are refused and shorter derived forms
    /// (such as a base64 fragment) are not searched for. A floor of 0 acts as 1.
    /// Applies to values added afterwards.
    pub fn floor(mut self, bytes: usize) -> Self {
        self.floor = bytes.max(1);
        self
    }

    /// Registers a secret under `label`, the credential name; its replacement text is
    /// `[REDACTED:<label>]`.
    ///
    /// The same label may be added several times (for example a token and its refresh
    /// token). When two secrets share a searched form, the one added first names it.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidSecret`], with a message naming the label and the rule (never the
    /// value), when the value is empty, shorter than the floor, made only of ASCII
    /// punctuation, whitespace or control characters, or when the redactor's forms would
    /// exceed [`MAX_PATTERN_BYTES`] in total. Nothing is registered on error.
    pub fn add(&mut self, label: &str, value: &SecretValue) -> Result<()> {
        let raw = value.expose_secret();
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
        if raw
            .iter()
            .all(|b| b.is_ascii_punctuation() || b.is_ascii_whitespace() || b.is_ascii_control())
        {
            return refuse(
                "the value is made only of punctuation, whitespace or control characters".into(),
            );
        }
        let forms = variants::variants(raw, self.floor);
        let added: usize = forms.iter().map(|f| f.len()).sum();
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
            .extend(forms.into_iter().map(|form| (form, index)));
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
        patterns.sort_by(|a, b| a.0.cmp(&b.0));
        patterns.dedup_by(|later, earlier| later.0 == earlier.0);

        let tags = self
            .labels
            .iter()
            .map(|l| format!("[REDACTED:{l}]").into_bytes().into_boxed_slice())
            .collect();
        let max_len = patterns.iter().map(|p| p.0.len()).max().unwrap_or(0);
        let mut first_bytes = [false; 256];
        for (p, _) in &patterns {
            if let Some(&b) = p.first() {
                first_bytes[usize::from(b)] = true;
            }
        }
        let automaton = if patterns.is_empty() {
            None
        } else {
            // A full DFA is fastest to search but its size grows with the total pattern bytes
            // times the alphabet; past a few hundred KiB of patterns (long secrets such as PEM
            // keys) building it costs seconds, so the contiguous NFA takes over there.
            let total: usize = patterns.iter().map(|p| p.0.len()).sum();
            let kind = (total > DFA_PATTERN_BYTES).then_some(AhoCorasickKind::ContiguousNFA);
            let ac = AhoCorasick::builder()
                .match_kind(MatchKind::LeftmostLongest)
                .kind(kind)
                .build(patterns.iter().map(|p| p.0.as_slice()))
                .map_err(|e| Error::internal(format!("building the redaction automaton: {e}")))?;
            Some(ac)
        };
        Ok(SecretRedactor {
            inner: Arc::new(Inner {
                automaton,
                patterns,
                labels: self.labels,
                tags,
                max_len,
                first_bytes,
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
            .field("patterns", &self.inner.patterns.len())
            .finish()
    }
}

impl SecretRedactor {
    /// The credential names this redactor replaces, in the order first added.
    pub fn labels(&self) -> &[String] {
        &self.inner.labels
    }

    /// How many distinct forms (raw and encoded) it searches for.
    pub fn pattern_count(&self) -> usize {
        self.inner.patterns.len()
    }

    /// Starts a streaming session with its concrete type (see [`Redactor::stream`]).
    pub fn stream_session(&self) -> SecretRedactStream {
        SecretRedactStream {
            inner: Arc::clone(&self.inner),
            held: Zeroizing::new(Vec::new()),
            cursor: Cursor::default(),
        }
    }
}

impl Redactor for SecretRedactor {
    fn redact(&self, input: &[u8]) -> Redacted {
        let mut output = Vec::with_capacity(input.len());
        let mut cursor = Cursor::default();
        let count = self
            .inner
            .process(input, input.len(), &mut cursor, &mut output);
        Redacted { output, count }
    }

    fn stream(&self) -> Box<dyn RedactStream + Send> {
        Box::new(self.stream_session())
    }
}

/// The shared, immutable part of a [`SecretRedactor`].
struct Inner {
    automaton: Option<AhoCorasick>,
    /// Searched forms sorted by bytes (pattern id = index), each with its label index.
    /// Sorted so "is this a prefix of some form" is a binary search.
    patterns: Vec<(Zeroizing<Vec<u8>>, usize)>,
    labels: Vec<String>,
    /// `[REDACTED:<label>]` per label.
    tags: Vec<Box<[u8]>>,
    /// Length of the longest form.
    max_len: usize,
    /// Whether some form starts with this byte.
    first_bytes: [bool; 256],
}

/// Where a redaction pass stands, in positions relative to the current haystack.
#[derive(Debug, Default, Clone, Copy)]
struct Cursor {
    /// Bytes before this position have been written out (verbatim or under a tag).
    emitted: usize,
    /// End of the last replaced run, while a later match starting before it could still
    /// extend it. When set, `emitted == open_end`.
    open_end: Option<usize>,
}

impl Inner {
    /// Writes to `out` the redacted form of `hay[cursor.emitted..limit]`, replacing every
    /// run of matches that starts before `limit` (a run may reach past `limit`; its end is
    /// left in `cursor`). Returns the number of runs replaced.
    ///
    /// Visits every position where some form matches, taking the longest match there, so the
    /// union of all matches is replaced even when secrets overlap or nest.
    fn process(&self, hay: &[u8], limit: usize, cursor: &mut Cursor, out: &mut Vec<u8>) -> usize {
        let mut count = 0;
        if let Some(ac) = &self.automaton {
            let mut pos = 0;
            while pos < limit {
                let Some(m) = ac.find(Input::new(hay).range(pos..)) else {
                    break;
                };
                if m.start() >= limit {
                    break;
                }
                match cursor.open_end {
                    Some(end) if m.start() < end => {
                        cursor.open_end = Some(end.max(m.end()));
                    }
                    _ => {
                        out.extend_from_slice(&hay[cursor.emitted..m.start()]);
                        let label = self.patterns[m.pattern().as_usize()].1;
                        out.extend_from_slice(&self.tags[label]);
                        count += 1;
                        cursor.open_end = Some(m.end());
                    }
                }
                cursor.emitted = cursor.open_end.unwrap_or(cursor.emitted);
                pos = m.start() + 1;
            }
        }
        if cursor.emitted < limit {
            out.extend_from_slice(&hay[cursor.emitted..limit]);
            cursor.emitted = limit;
        }
        count
    }

    /// The start of the longest suffix of `hay` that is a proper prefix of some form, or
    /// `hay.len()` when there is none. Input before it can never be part of a match that
    /// is still incomplete.
    fn hold_start(&self, hay: &[u8]) -> usize {
        let from = hay.len().saturating_sub(self.max_len.saturating_sub(1));
        (from..hay.len())
            .find(|&p| self.first_bytes[usize::from(hay[p])] && self.is_proper_prefix(&hay[p..]))
            .unwrap_or(hay.len())
    }

    /// Whether `s` is a proper prefix of some form.
    fn is_proper_prefix(&self, s: &[u8]) -> bool {
        // Forms with prefix `s` sit together from the first form not less than `s`; if that
        // one equals `s`, the next may be longer.
        let i = self.patterns.partition_point(|p| p.0.as_slice() < s);
        self.patterns[i..]
            .iter()
            .take(2)
            .any(|p| p.0.len() > s.len() && p.0.starts_with(s))
    }
}

/// The streaming session of a [`SecretRedactor`]: see [`RedactStream`].
///
/// Owned and `'static`; holds at most one form's length minus one byte of input between
/// calls, in a buffer zeroized on drop. Its `Debug` shows only how many bytes it holds.
pub struct SecretRedactStream {
    inner: Arc<Inner>,
    /// Input not yet fully resolved; positions in `cursor` are relative to its start.
    held: Zeroizing<Vec<u8>>,
    cursor: Cursor,
}

impl fmt::Debug for SecretRedactStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretRedactStream")
            .field("held_bytes", &self.held.len())
            .finish_non_exhaustive()
    }
}

impl SecretRedactStream {
    /// Redacts and releases `hay` up to its hold point, returning the replacement count and
    /// the hold point; `cursor` is left relative to the hold point.
    fn release(
        inner: &Inner,
        hay: &[u8],
        cursor: &mut Cursor,
        out: &mut Vec<u8>,
    ) -> (usize, usize) {
        let hold = inner.hold_start(hay);
        let count = inner.process(hay, hold, cursor, out);
        cursor.emitted -= hold;
        cursor.open_end = cursor
            .open_end
            .and_then(|end| end.checked_sub(hold))
            .filter(|&e| e > 0);
        (count, hold)
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
        if self.held.is_empty() {
            // Nothing held: search the chunk in place and keep only its tail.
            let (count, hold) = Self::release(&self.inner, chunk, &mut self.cursor, out);
            extend_zeroizing(&mut self.held, &chunk[hold..]);
            count
        } else {
            extend_zeroizing(&mut self.held, chunk);
            let (count, hold) = Self::release(&self.inner, &self.held, &mut self.cursor, out);
            self.held.drain(..hold);
            count
        }
    }

    fn finish(&mut self, out: &mut Vec<u8>) -> usize {
        let count = self
            .inner
            .process(&self.held, self.held.len(), &mut self.cursor, out);
        zeroize::Zeroize::zeroize(&mut *self.held);
        self.cursor = Cursor::default();
        count
    }
}
