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
///
/// A stream calls this once per push, so the common case is branch-free: with 64 bytes or
/// more, on x86-64 with AVX2, the last 64 bytes are classified at once ([`avx2::run_at_end`]);
/// a byte-by-byte loop there, whose exit depends on the text, cost about 4% of a stream fed
/// 4 KiB chunks in mispredicted branches.
pub(super) fn base64_run_after(before: usize, passed: &[u8]) -> usize {
    #[cfg(target_arch = "x86_64")]
    if let Some(last) = passed.last_chunk::<64>()
        && let Some(simd) = pulp::x86::V3::try_new()
    {
        return simd
            .vectorize(|| avx2::run_at_end(simd, last))
            .min(LINE_RUN);
    }
    let tail = passed
        .iter()
        .rev()
        .take(LINE_RUN)
        .take_while(|&&b| is_base64(b))
        .count();
    if tail == passed.len() {
        (before + tail).min(LINE_RUN)
    } else {
        tail
    }
}

/// Whether the base64 run that ends at `hay[..end]` is at least [`LINE_RUN`] long, counting
/// the `before` base64 bytes of earlier input when it reaches back to the start.
fn long_run(hay: &[u8], before: usize, end: usize) -> bool {
    let back = hay[..end]
        .iter()
        .rev()
        .take(LINE_RUN)
        .take_while(|&&b| is_base64(b))
        .count();
    back == LINE_RUN || (back == end && before + back >= LINE_RUN)
}

/// The line break that ends with the line feed `hay[nl]`, as (start, length), when it is a
/// gap (see the module docs).
fn line_gap_at(hay: &[u8], before: usize, nl: usize) -> Option<(usize, usize)> {
    let (start, len) = match nl.checked_sub(1) {
        Some(cr) if hay[cr] == b'\r' => (cr, 2),
        _ => (nl, 1),
    };
    let next_is_base64 = hay.get(nl + 1).is_none_or(|&b| is_base64(b));
    (long_run(hay, before, start) && next_is_base64).then_some((start, len))
}

/// A CR that ends `hay` and may be the first half of a CRLF still to come, when it is a gap.
fn trailing_cr_gap(hay: &[u8], before: usize) -> Option<(usize, usize)> {
    let cr = hay.len().checked_sub(1)?;
    (hay[cr] == b'\r' && long_run(hay, before, cr)).then_some((cr, 1))
}

/// The line breaks of `hay` that are gaps, as (start, length) in order; `before` is the
/// number of base64 bytes right before `hay` (see [`base64_run_after`]).
///
/// The portable pass behind [`scan`]: only line feeds are visited (`memchr`), each looking
/// back at most [`LINE_RUN`] bytes; JSON without newlines costs the one pass, and log text's
/// lines end in bytes that are not base64, so the look back stops at once.
fn line_gaps(hay: &[u8], before: usize) -> Vec<(usize, usize)> {
    let mut out: Vec<_> = memchr::memchr_iter(b'\n', hay)
        .filter_map(|nl| line_gap_at(hay, before, nl))
        .collect();
    out.extend(trailing_cr_gap(hay, before));
    out
}

/// One pass over `hay` for both kinds of gap: its line breaks that are gaps (as
/// [`line_gaps`]) and whether it may hold a gap character (as [`may_hold_gap`]).
///
/// On x86-64 with AVX2 (decided at run time) this is one 32-byte-wide pass ([`avx2`]);
/// elsewhere it is the two portable passes.
fn scan(hay: &[u8], before: usize) -> (Vec<(usize, usize)>, bool) {
    #[cfg(target_arch = "x86_64")]
    if let Some(simd) = pulp::x86::V3::try_new() {
        return simd.vectorize(|| avx2::scan(simd, hay, before));
    }
    (line_gaps(hay, before), may_hold_gap(hay))
}

/// The AVX2 form of [`scan`], through `pulp`'s safe wrappers of the `core::arch` intrinsics:
/// the caller runs it inside [`pulp::x86::V3::vectorize`], which enables the target features
/// that `V3::try_new` detected, so the intrinsics inline into 32-byte vector code.
#[cfg(target_arch = "x86_64")]
pub(super) mod avx2 {
    use std::arch::x86_64::__m256i;

    use pulp::x86::V3;

    use super::{line_gap_at, may_start_gap, trailing_cr_gap};

    /// Nibble tables classifying a byte `b` by `HIGH[b >> 4] & LOW[b & 15]`.
    ///
    /// Bits 0-3, [`GAP`]: `b` may start a gap ([`may_start_gap`](super::may_start_gap)).
    /// Bit 0: high nibble 0, low nibble not tab, LF or CR; bit 1: high nibble 1; bit 2: 0x7f
    /// and 0xef (low nibble f, high 7 or e); bit 3: 0xe2.
    ///
    /// Bits 4-7, [`BASE64`]: `b` is in the standard base64 alphabet
    /// ([`is_base64`](super::is_base64)) or is CR, the two kinds of byte that may come
    /// before a line feed that is a gap. Bit 4: `+` and `/` (0x2b, 0x2f) and CR (0x0d), and
    /// with them, from the same nibbles, `-` (0x2d) and the controls 0x0b and 0x0f (a line
    /// feed next to one of those three is checked exactly and found not to be a gap); bit 5:
    /// digits 0x30-0x39; bit 6: 0x41-0x4f and 0x61-0x6f; bit 7: 0x50-0x5a and 0x70-0x7a.
    const HIGH: [u8; 16] = {
        let mut t = [0; 16];
        t[0x0] = 1 | 16;
        t[0x1] = 2;
        t[0x2] = 16;
        t[0x3] = 32;
        t[0x4] = 64;
        t[0x5] = 128;
        t[0x6] = 64;
        t[0x7] = 4 | 128;
        t[0xe] = 4 | 8;
        t
    };
    /// See [`HIGH`].
    const LOW: [u8; 16] = {
        let mut t = [0; 16];
        let mut low = 0;
        while low < 16 {
            t[low] = 2
                | if matches!(low, 0x9 | 0xa | 0xd) { 0 } else { 1 }
                | if low == 0xf { 4 } else { 0 }
                | if low == 0x2 { 8 } else { 0 }
                | if matches!(low, 0xb | 0xd | 0xf) {
                    16
                } else {
                    0
                }
                | if low <= 0x9 { 32 } else { 0 }
                | if low >= 0x1 { 64 } else { 0 }
                | if low <= 0xa { 128 } else { 0 };
            low += 1;
        }
        t
    };
    /// The class bits of a possible gap start (see [`HIGH`]).
    const GAP: i8 = 0x0f;
    /// The class bits of a base64-alphabet byte or CR (see [`HIGH`]).
    const BASE64: i8 = 0xf0_u8 as i8;

    /// A 16-byte table in both 128-bit lanes (`vpshufb` looks up within a lane).
    fn lanes(table: [u8; 16]) -> __m256i {
        let mut both = [0u8; 32];
        both[..16].copy_from_slice(&table);
        both[16..].copy_from_slice(&table);
        pulp::cast(both)
    }

    /// Each byte `b` of `v` classified as `high[b >> 4] & low[b & 15]`, with `high` and `low`
    /// 16-byte tables in both lanes ([`lanes`]).
    #[inline(always)]
    fn classify(simd: V3, high: __m256i, low: __m256i, v: __m256i) -> __m256i {
        let (avx, avx2) = (simd.avx, simd.avx2);
        let nibble = avx._mm256_set1_epi8(0x0f);
        let hi = avx2._mm256_and_si256(avx2._mm256_srli_epi16::<4>(v), nibble);
        let lo = avx2._mm256_and_si256(v, nibble);
        avx2._mm256_and_si256(
            avx2._mm256_shuffle_epi8(high, hi),
            avx2._mm256_shuffle_epi8(low, lo),
        )
    }

    /// See [`scan`](super::scan). Per 64 bytes: each byte's class by two table lookups
    /// ([`HIGH`]), and the same 64 bytes read again one byte later, compared with LF. One
    /// test then asks whether any byte has [`GAP`] bits, or [`BASE64`] bits while the byte
    /// after it is a line feed: a line feed can be a gap only after a base64 byte or CR (see
    /// [`line_gap_at`]). Text without gap characters whose lines end in other bytes, as log
    /// lines and JSON bodies do, passes every block on that one test, with no branch that
    /// depends on where its lines end; a block that fails it is looked at exactly.
    #[inline(always)]
    pub(super) fn scan(simd: V3, hay: &[u8], before: usize) -> (Vec<(usize, usize)>, bool) {
        let (avx, avx2) = (simd.avx, simd.avx2);
        let (high, low) = (lanes(HIGH), lanes(LOW));
        let lf = avx._mm256_set1_epi8(b'\n' as i8);
        let base64 = avx._mm256_set1_epi8(BASE64);
        let zero = avx._mm256_setzero_si256();
        let class = |v: __m256i| classify(simd, high, low, v);
        // The top bit of each byte of `a`, then of `b` (`vpmovmskb`), as one word.
        let bits = |a: __m256i, b: __m256i| {
            let half = |v: __m256i| u64::from(avx2._mm256_movemask_epi8(v) as u32);
            half(a) | half(b) << 32
        };
        let gap_bits = avx._mm256_set1_epi8(GAP);
        let mut lines = Vec::new();
        let mut chars = false;
        // 64-byte blocks as pairs of 32-byte arrays (no fallible conversion), each with the
        // 64 bytes one later, then the tail. The last block may have no byte after it: its
        // bytes one later are copied and padded with a byte that is not LF.
        let (blocks, _) = hay.as_chunks::<32>().0.as_chunks::<2>();
        let (next_blocks, _) = hay
            .get(1..)
            .unwrap_or_default()
            .as_chunks::<32>()
            .0
            .as_chunks::<2>();
        let mut padded = [[0u8; 32]; 2];
        if blocks.len() > next_blocks.len() {
            let rest = &hay[next_blocks.len() * 64 + 1..];
            padded.as_flattened_mut()[..rest.len()].copy_from_slice(rest);
        }
        // A block at `p` looks at the line feeds at `p + 1 ..= p + 64`; one at 0 has no byte
        // before it here, so it is checked first.
        if !blocks.is_empty() && hay[0] == b'\n' {
            lines.extend(line_gap_at(hay, before, 0));
        }
        for (k, [a, b]) in blocks.iter().enumerate() {
            let [next_a, next_b] = if k < next_blocks.len() {
                &next_blocks[k]
            } else {
                &padded
            };
            let (a, b): (__m256i, __m256i) = (pulp::cast(*a), pulp::cast(*b));
            let (class_a, class_b) = (class(a), class(b));
            // 0xff before a line feed, GAP elsewhere: keeps every gap bit, and the base64
            // bits of the bytes before line feeds.
            let (feed_a, feed_b) = (
                avx2._mm256_cmpeq_epi8(pulp::cast(*next_a), lf),
                avx2._mm256_cmpeq_epi8(pulp::cast(*next_b), lf),
            );
            let keep = |c: __m256i, feed: __m256i| {
                avx2._mm256_and_si256(c, avx2._mm256_or_si256(feed, gap_bits))
            };
            let flagged = avx2._mm256_or_si256(keep(class_a, feed_a), keep(class_b, feed_b));
            if avx._mm256_testz_si256(flagged, flagged) == 1 {
                continue;
            }
            let classes = avx2._mm256_or_si256(class_a, class_b);
            chars |= avx._mm256_testz_si256(classes, gap_bits) == 0;
            // Over-approximated (see `HIGH`): base64, CR, and three rare lookalikes.
            let not_base64_before_feed = |c: __m256i, feed: __m256i| {
                let c = avx2._mm256_and_si256(avx2._mm256_and_si256(c, base64), feed);
                avx2._mm256_cmpeq_epi8(c, zero)
            };
            let feeds = !bits(
                not_base64_before_feed(class_a, feed_a),
                not_base64_before_feed(class_b, feed_b),
            );
            if feeds != 0 {
                line_gaps_in(hay, before, k * 64 + 1, feeds, &mut lines);
            }
        }
        // The tail's line feeds, but for one at its first byte when a block looked at it.
        let tail_at = blocks.len() * 64;
        for (i, &b) in hay.iter().enumerate().skip(tail_at) {
            if b == b'\n' && (i > tail_at || tail_at == 0) {
                lines.extend(line_gap_at(hay, before, i));
            }
            chars |= may_start_gap(b);
        }
        lines.extend(trailing_cr_gap(hay, before));
        (lines, chars)
    }

    /// Nibble tables of the standard base64 alphabet, exactly ([`is_base64`](super::is_base64)):
    /// bit 0 `+` and `/`, bit 1 digits, bit 2 `A–O` and `a–o`, bit 3 `P–Z` and `p–z`.
    const ALPHABET_HIGH: [u8; 16] = {
        let mut t = [0; 16];
        t[0x2] = 1;
        t[0x3] = 2;
        t[0x4] = 4;
        t[0x5] = 8;
        t[0x6] = 4;
        t[0x7] = 8;
        t
    };
    /// See [`ALPHABET_HIGH`].
    const ALPHABET_LOW: [u8; 16] = {
        let mut t = [0; 16];
        let mut low = 0;
        while low < 16 {
            t[low] = if matches!(low, 0xb | 0xf) { 1 } else { 0 }
                | if low <= 0x9 { 2 } else { 0 }
                | if low >= 0x1 { 4 } else { 0 }
                | if low <= 0xa { 8 } else { 0 };
            low += 1;
        }
        t
    };

    /// How many bytes at the end of `last` are in the standard base64 alphabet (0 to 64):
    /// two table lookups per 32 bytes and a count of leading ones, with no branch.
    #[inline(always)]
    pub(super) fn run_at_end(simd: V3, last: &[u8; 64]) -> usize {
        members(simd, &ALPHABET_HIGH, &ALPHABET_LOW, last).leading_ones() as usize
    }

    /// Bit `i` set for each byte `b = block[i]` whose class `high[b >> 4] & low[b & 15]` is
    /// not zero ([`classify`]).
    #[inline(always)]
    pub(in crate::redact) fn members(
        simd: V3,
        high: &[u8; 16],
        low: &[u8; 16],
        block: &[u8; 64],
    ) -> u64 {
        let (avx, avx2) = (simd.avx, simd.avx2);
        let (high, low) = (lanes(*high), lanes(*low));
        let zero = avx._mm256_setzero_si256();
        // 0xff where the class is zero, as the top bit of each byte, inverted.
        let half = |bytes: &[u8; 32]| {
            let class = classify(simd, high, low, pulp::cast(*bytes));
            let outside = avx2._mm256_cmpeq_epi8(class, zero);
            u64::from(!(avx2._mm256_movemask_epi8(outside) as u32))
        };
        let (halves, _) = block.as_chunks::<32>();
        half(&halves[0]) | half(&halves[1]) << 32
    }

    /// Appends the line gaps among the line feeds at `base + i` for each bit `i` of `feeds`.
    /// Kept out of line so that the vector loop's registers stay free.
    #[inline(never)]
    fn line_gaps_in(
        hay: &[u8],
        before: usize,
        base: usize,
        mut feeds: u64,
        lines: &mut Vec<(usize, usize)>,
    ) {
        while feeds != 0 {
            let nl = base + feeds.trailing_zeros() as usize;
            feeds &= feeds - 1;
            lines.extend(line_gap_at(hay, before, nl));
        }
    }
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
        let (lines, chars) = scan(hay, before);
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
                // Up to the next gap (or the window's end) in one copy.
                let next = gaps.peek().map_or(w.end, |&(at, _)| at.min(w.end));
                run = 0;
                bytes.extend_from_slice(&hay[i..next]);
                origin.extend(i..next);
                i = next;
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

    /// The portable passes that [`scan`] must agree with.
    fn portable(hay: &[u8], before: usize) -> (Vec<(usize, usize)>, bool) {
        (line_gaps(hay, before), may_hold_gap(hay))
    }

    /// The AVX2 kernel called directly, or `None` on a machine without AVX2 (where [`scan`]
    /// is the portable passes, and these tests compare them with themselves).
    fn vector(hay: &[u8], before: usize) -> Option<(Vec<(usize, usize)>, bool)> {
        #[cfg(target_arch = "x86_64")]
        if let Some(simd) = pulp::x86::V3::try_new() {
            return Some(simd.vectorize(|| avx2::scan(simd, hay, before)));
        }
        None
    }

    /// [`scan`] and the AVX2 kernel (where there is one) agree with the portable passes.
    fn agree(hay: &[u8], before: usize) -> Result<(), String> {
        let want = portable(hay, before);
        let got = scan(hay, before);
        let direct = vector(hay, before);
        if got != want || direct.as_ref().is_some_and(|d| *d != want) {
            return Err(format!(
                "portable {want:?}, scan {got:?}, AVX2 kernel {direct:?}"
            ));
        }
        Ok(())
    }

    /// Every byte value at every offset of a 130-byte haystack (two 64-byte blocks and a
    /// tail), in base64 lines and in plain text: [`scan`] finds the same line gaps and gap
    /// characters as the portable passes, and the dispatch is exercised for real here
    /// (this machine class has AVX2; elsewhere both sides are the portable code).
    #[test]
    fn scan_matches_the_portable_passes_for_every_byte_at_every_offset() {
        let wrapped = b"QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZn\r\nMTIzNDU2Nzg5MDEyMzQ1Njc4OTAxMjM0NTY3ODkw\nQUJD"
            .repeat(2);
        let text = b"ts=2026-11-30 level=info msg=\"ok\"\nid=42 path=/v3/contacts latency=12\r\n"
            .repeat(2);
        let mut checked = 0;
        for base in [&wrapped[..130], &text[..130]] {
            for before in [0, 39, 40] {
                agree(base, before).unwrap_or_else(|e| panic!("before {before}: {e}"));
                for b in 0..=255u8 {
                    for at in 0..base.len() {
                        let mut hay = base.to_vec();
                        hay[at] = b;
                        agree(&hay, before).unwrap_or_else(|e| {
                            panic!("byte {b:#04x} at {at}, {before} before: {e}")
                        });
                        checked += 1;
                    }
                }
            }
        }
        assert_eq!(checked, 2 * 3 * 256 * 130);
        // The base texts themselves: the wrapped one has line gaps, the plain one has none.
        assert!(!scan(&wrapped[..130], 0).0.is_empty());
        assert_eq!(scan(&text[..130], 0), (Vec::new(), false));
    }

    /// The run of base64 bytes ending the input, for every byte value at every position of
    /// an all-base64 tail, at every length from 0 to 130 and each count carried in: the
    /// vector count (64 bytes or more, on x86-64 with AVX2) agrees with the byte-by-byte one.
    #[test]
    fn base64_run_after_agrees_with_the_byte_test() {
        let byte_test = |before: usize, passed: &[u8]| {
            let tail = passed.iter().rev().take_while(|&&b| is_base64(b)).count();
            let carried = if tail == passed.len() { before } else { 0 };
            (carried + tail).min(LINE_RUN)
        };
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let base: Vec<u8> = alphabet.iter().cycle().take(130).copied().collect();
        let mut checked = 0;
        for len in 0..=130 {
            for before in [0, 7, 40] {
                for b in 0..=255u8 {
                    for at in 0..len.min(70) {
                        let mut passed = base[..len].to_vec();
                        let i = len - 1 - at;
                        passed[i] = b;
                        assert_eq!(
                            base64_run_after(before, &passed),
                            byte_test(before, &passed),
                            "byte {b:#04x} {at} from the end of {len}, {before} before"
                        );
                        checked += 1;
                    }
                }
            }
        }
        assert!(checked > 1_000_000, "{checked}");
        assert_eq!(base64_run_after(3, b"ab"), 5);
        assert_eq!(base64_run_after(3, &base[..100]), LINE_RUN);
        assert_eq!(base64_run_after(3, b"ab cd"), 2);
    }

    proptest::proptest! {
        /// Random haystacks of base64 runs, line breaks, tabs, gap bytes and text, of every
        /// length up to 300, at each `before`: [`scan`] agrees with the portable passes.
        #[test]
        fn prop_scan_matches_the_portable_passes(
            hay in proptest::collection::vec(
                proptest::prop_oneof![
                    8 => proptest::sample::select(b"AZaz09+/QkFC".to_vec()),
                    2 => proptest::sample::select(b"\n\r\t \"=:".to_vec()),
                    1 => proptest::num::u8::ANY,
                ],
                0..300,
            ),
            before in 0usize..50,
        ) {
            proptest::prop_assert_eq!(agree(&hay, before), Ok(()));
        }
    }
}
