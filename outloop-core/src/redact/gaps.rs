//! Gap characters an upstream or a terminal may insert inside a secret, and the skeleton
//! view of a haystack with them removed.
//!
//! A gap is one of: a C0 control character other than tab, line feed and carriage return
//! (those separate tokens in nearly all text, so they are not gaps; a multi-line secret
//! registers its lines instead), DEL, an ANSI control sequence `ESC [ <parameters>
//! <intermediates> <final>` (ECMA-48 CSI: colours `…m` in either the `;` or the `:` form,
//! erase-line `…K` as GNU grep and gcc write after each colour, cursor moves; at most
//! [`MAX_SGR_PARAMS`] parameter and intermediate bytes), or a zero-width character (U+200B,
//! U+200C, U+200D, U+2060 word joiner, U+FEFF, in UTF-8). An incomplete sequence at the very end of the haystack counts
//! as a gap, so a stream holds it back with the secret prefix before it.
//!
//! # Line-wrapped base64
//!
//! One exception to "line breaks are not gaps": base64 wrapped into lines. A MIME body
//! (RFC 2045 §6.8: lines of at most 76 characters, CRLF) or a PEM block (RFC 7468 §2: 64
//! columns, LF) splits an encoded secret at arbitrary offsets, so no registered form would
//! match it. A line break (`\r\n` or `\n`) is therefore a gap when the [`LINE_RUN`] (40)
//! bytes before it are all in the standard base64 alphabet (`A–Z a–z 0–9 + /`; no space,
//! no `=`, since padding ends an encoding) and the byte after it is too, or the haystack
//! ends there (an incomplete break, as above: a lone `\r` or a break at the very end).
//! Ordinary JSON and log text almost never has 40 such bytes in a row right before a line
//! break, so it still builds no skeleton. The 40 bytes may reach back before the haystack:
//! a stream passes how many base64 bytes ended the input it already released
//! ([`base64_run_after`], [`Skeleton::build_after`]), so a stream decides every break
//! exactly as a whole-buffer pass does.
//!
//! Matching on the skeleton stays bounded: a run of gaps longer than [`MAX_GAP_RUN`] bytes
//! breaks the skeleton into segments, and no match spans two segments. A secret with gaps
//! inserted is therefore at most `len + (len - 1) * MAX_GAP_RUN` bytes long.
//!
//! A match found in the skeleton is replaced over its whole original range, gaps included.
//! A base64 mask keeps CR and LF in place (so a wrapped payload keeps its lines and decodes
//! to the same length); a `[REDACTED:…]` tag (a hex or raw form that happened to span a
//! wrapped line) replaces the line breaks inside it too.

use std::ops::Range;

use zeroize::Zeroizing;

/// The most parameter bytes in an ANSI colour sequence treated as a gap.
pub(super) const MAX_SGR_PARAMS: usize = 24;

/// The longest run of gap bytes a match may span.
pub(super) const MAX_GAP_RUN: usize = 32;

/// How many base64-alphabet bytes must come right before a line break for it to be a gap
/// (see the module docs): below the 64 and 76 columns of PEM and MIME, far above the words
/// of ordinary text.
pub(super) const LINE_RUN: usize = 40;

/// Whether `b` is in the standard base64 alphabet, padding excluded.
fn is_base64(b: u8) -> bool {
    b.is_ascii_alphanumeric() | (b == b'+') | (b == b'/')
}

/// The number of base64-alphabet bytes (at most [`LINE_RUN`]) that end the input once
/// `passed` follows input that ended with `before` of them: the context a stream carries
/// from released input into [`Skeleton::build_after`].
pub(super) fn base64_run_after(before: usize, passed: &[u8]) -> usize {
    let tail = passed.iter().rev().take_while(|&&b| is_base64(b)).count();
    if tail == passed.len() {
        (before + tail).min(LINE_RUN)
    } else {
        tail.min(LINE_RUN)
    }
}

/// The line breaks of `hay` that are gaps, as (start, length) in order; `before` is the
/// number of base64 bytes right before `hay` (see [`base64_run_after`]).
///
/// Only line feeds are visited (a SIMD `memchr` pass), each looking back at most
/// [`LINE_RUN`] bytes; JSON without newlines costs the one pass, and log text's lines end in
/// bytes that are not base64, so the look back stops at once.
fn line_gaps(hay: &[u8], before: usize) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    // Whether the base64 run that ends at `end` (exclusive) is at least LINE_RUN long,
    // counting the `before` bytes of earlier input when it reaches back to the start.
    let long_run = |end: usize| {
        let back = hay[..end]
            .iter()
            .rev()
            .take(LINE_RUN)
            .take_while(|&&b| is_base64(b))
            .count();
        back == LINE_RUN || (back == end && before + back >= LINE_RUN)
    };
    let next_is_base64 = |at: usize| hay.get(at).is_none_or(|&b| is_base64(b));
    for nl in memchr::memchr_iter(b'\n', hay) {
        let (start, len) = match nl.checked_sub(1) {
            Some(cr) if hay[cr] == b'\r' => (cr, 2),
            _ => (nl, 1),
        };
        if long_run(start) && next_is_base64(nl + 1) {
            out.push((start, len));
        }
    }
    // A CR that ends the haystack may be the first half of a CRLF still to come.
    if let Some(cr) = hay.len().checked_sub(1)
        && hay[cr] == b'\r'
        && long_run(cr)
    {
        out.push((cr, 1));
    }
    out
}

/// A haystack with gap characters removed: its bytes (zeroized on drop), where each came
/// from, and the segments between over-long gap runs.
pub(super) struct Skeleton {
    bytes: Zeroizing<Vec<u8>>,
    /// `origin[i]` is the haystack position of `bytes[i]`.
    origin: Vec<usize>,
    segments: Vec<Range<usize>>,
    /// Whether the kept stretches reach the end of the haystack.
    reaches_end: bool,
}

/// A cheap, vectorisable test: false means the haystack holds no gap (true may be wrong).
///
/// Works in 256-byte pieces, each first given a rougher test with fewer operations per byte
/// (any byte other than LF and CR below 0x20, DEL, or any byte from 0x80: one add and one
/// signed compare, two equalities) and the exact first-byte test only when that one fires:
/// ASCII text with line breaks, the usual API body or log, costs the rough test alone; a
/// piece with non-ASCII characters costs both.
fn may_hold_gap(hay: &[u8]) -> bool {
    // Byte-wide flags OR-ed over a piece before one test: the loops compile to a few vector
    // operations per 16 bytes.
    let rough = |piece: &[u8]| {
        piece.iter().fold(0u8, |acc, &b| {
            // `b + 1` as a signed byte is below 0x21 exactly for 0x00-0x1f, 0x7f and 0x80-0xff.
            acc | u8::from(((b.wrapping_add(1) as i8) < 0x21) & (b != b'\n') & (b != b'\r'))
        }) != 0
    };
    let exact = |piece: &[u8]| {
        piece
            .iter()
            .fold(0u8, |acc, &b| acc | u8::from(may_start_gap(b)))
            != 0
    };
    hay.chunks(256).any(|piece| rough(piece) && exact(piece))
}

/// Whether a gap character may start with byte `b` (see [`gap_len`]).
///
/// Written without short-circuits so that [`may_hold_gap`]'s loop over it vectorises.
fn may_start_gap(b: u8) -> bool {
    ((b < 0x20) & (b != b'\t') & (b != b'\n') & (b != b'\r'))
        | (b == 0x7f)
        | (b == 0xe2)
        | (b == 0xef)
}

/// The length of the gap starting at `hay[i]`, or 0.
fn gap_len(hay: &[u8], i: usize) -> usize {
    let rest = &hay[i..];
    match rest[0] {
        0x1b => {
            if rest.len() == 1 {
                return 1;
            }
            if rest[1] != b'[' {
                return 1;
            }
            // ECMA-48 CSI: parameter bytes 0x30-0x3F, intermediate bytes 0x20-0x2F, then
            // one final byte 0x40-0x7E.
            let params = rest[2..]
                .iter()
                .take(MAX_SGR_PARAMS + 1)
                .take_while(|&&b| (0x20..=0x3f).contains(&b))
                .count();
            match rest.get(2 + params) {
                None if params <= MAX_SGR_PARAMS => rest.len(),
                Some(0x40..=0x7e) if params <= MAX_SGR_PARAMS => 3 + params,
                _ => 1,
            }
        }
        b'\t' | b'\n' | b'\r' => 0,
        b if b < 0x20 || b == 0x7f => 1,
        0xe2 => match rest {
            [_, 0x80, 0x8b..=0x8d, ..] | [_, 0x81, 0xa0, ..] => 3,
            [_] | [_, 0x80 | 0x81] => rest.len(),
            _ => 0,
        },
        0xef => match rest {
            [_, 0xbb, 0xbf, ..] => 3,
            [_] | [_, 0xbb] => rest.len(),
            _ => 0,
        },
        _ => 0,
    }
}

impl Skeleton {
    /// The skeleton of `hay`, or `None` when it holds no gap (the common case, decided by
    /// one fast pass). `hay` is taken to start the input; see [`Skeleton::build_after`].
    #[cfg(test)]
    pub(super) fn build(hay: &[u8]) -> Option<Skeleton> {
        Self::build_after(hay, 0)
    }

    /// The skeleton of `hay` when the input before it ended with `before` base64-alphabet
    /// bytes (from [`base64_run_after`]; 0 at the start of the input), which decides whether a
    /// line break in `hay`'s first [`LINE_RUN`] bytes is a gap.
    #[cfg(test)]
    pub(super) fn build_after(hay: &[u8], before: usize) -> Option<Skeleton> {
        Self::build_near(hay, before, usize::MAX)
    }

    /// As [`Skeleton::build_after`], keeping only the bytes within `reach` (the longest
    /// form's length) of some gap: a match that holds no gap is found in the haystack itself,
    /// and one that holds a gap lies within `reach` non-gap bytes of it on either side, and of
    /// each further gap it holds. So the work and memory grow with the gaps and their
    /// surroundings, not with the haystack (one wrapped base64 line in a 64 KiB slice costs a
    /// few hundred bytes). Stretches far apart become separate segments.
    pub(super) fn build_near(hay: &[u8], before: usize, reach: usize) -> Option<Skeleton> {
        let lines = line_gaps(hay, before);
        let chars = may_hold_gap(hay);
        if lines.is_empty() && !chars {
            return None;
        }
        // Every gap, in order: line gaps from the list, gap characters found by a byte test
        // that rules out all but their possible first bytes.
        let mut gaps: Vec<(usize, usize)> = Vec::new();
        let mut lines = lines.into_iter().peekable();
        let mut i = 0;
        while i < hay.len() {
            if let Some(&(at, len)) = lines.peek()
                && at == i
            {
                lines.next();
                gaps.push((at, len));
                i += len;
                continue;
            }
            if chars && may_start_gap(hay[i]) {
                let g = gap_len(hay, i);
                if g > 0 {
                    gaps.push((i, g));
                    i += g;
                    continue;
                }
            }
            match lines.peek() {
                // Nothing but line gaps left: jump to the next one.
                Some(&(at, _)) if !chars => i = at,
                None if !chars => break,
                _ => i += 1,
            }
        }
        if gaps.is_empty() {
            return None;
        }
        // The stretches to keep: `reach` bytes around each gap, merged.
        let mut windows: Vec<Range<usize>> = Vec::new();
        for &(at, len) in &gaps {
            let lo = at.saturating_sub(reach);
            let hi = (at + len).saturating_add(reach).min(hay.len());
            match windows.last_mut() {
                Some(w) if lo <= w.end => w.end = w.end.max(hi),
                _ => windows.push(lo..hi),
            }
        }
        let kept: usize = windows.iter().map(|w| w.end - w.start).sum();
        let mut bytes = Zeroizing::new(Vec::with_capacity(kept));
        let mut origin = Vec::with_capacity(kept);
        let mut segments = Vec::new();
        let mut gaps = gaps.into_iter().peekable();
        for w in &windows {
            let mut seg_start = bytes.len();
            let mut run = 0;
            let mut i = w.start;
            while i < w.end {
                while gaps.peek().is_some_and(|&(at, _)| at < i) {
                    gaps.next();
                }
                if let Some(&(at, len)) = gaps.peek()
                    && at == i
                {
                    gaps.next();
                    run += len;
                    i += len;
                    if run > MAX_GAP_RUN && seg_start < bytes.len() {
                        segments.push(seg_start..bytes.len());
                        seg_start = bytes.len();
                    }
                    continue;
                }
                run = 0;
                bytes.push(hay[i]);
                origin.push(i);
                i += 1;
            }
            if seg_start < bytes.len() {
                segments.push(seg_start..bytes.len());
            }
        }
        let reaches_end = windows.last().is_some_and(|w| w.end == hay.len());
        Some(Skeleton {
            bytes,
            origin,
            segments,
            reaches_end,
        })
    }

    /// Whether the last segment reaches the haystack's end (so a secret prefix at its end is
    /// one at the haystack's end).
    pub(super) fn reaches_end(&self) -> bool {
        self.reaches_end
    }

    /// The segments (ranges of skeleton positions) a match may lie in.
    pub(super) fn segments(&self) -> &[Range<usize>] {
        &self.segments
    }

    /// The skeleton bytes in `range`.
    pub(super) fn bytes(&self, range: Range<usize>) -> &[u8] {
        &self.bytes[range]
    }

    /// The haystack range covering skeleton positions `start..end` (`end > start`).
    pub(super) fn original(&self, start: usize, end: usize) -> (usize, usize) {
        (self.origin[start], self.origin[end - 1] + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The two-step test says "may hold a gap" exactly when some byte may start one, for
    /// every byte value at every offset of a 256-byte piece, in ASCII text with line breaks
    /// and in text with non-ASCII characters.
    #[test]
    fn may_hold_gap_matches_the_byte_test() {
        let ascii = b"{\"id\":1,\"note\":\"a\tb\"}\r\n".repeat(40);
        let accents = "José Müller, señor; ".repeat(40).into_bytes();
        for base in [ascii, accents] {
            assert!(!may_hold_gap(&base), "the base text holds no gap");
            for b in 0..=255u8 {
                for at in [0, 1, 15, 16, 255, 256, 300, base.len() - 1] {
                    let mut hay = base.clone();
                    hay[at] = b;
                    let want = hay.iter().any(|&c| may_start_gap(c));
                    assert_eq!(may_hold_gap(&hay), want, "byte {b:#04x} at {at}");
                }
            }
        }
    }
}
