//! Gap characters an upstream or a terminal may insert inside a secret, and the skeleton
//! view of a haystack with them removed.
//!
//! A gap is one of: a C0 control character other than tab, line feed and carriage return
//! (those separate tokens in nearly all text, so they are not gaps; a multi-line secret
//! registers its lines instead), DEL, an ANSI SGR colour sequence `ESC [ <digits and ;> m`
//! (at most [`MAX_SGR_PARAMS`] parameter bytes), or a zero-width character (U+200B, U+200C,
//! U+200D, U+FEFF, in UTF-8). An incomplete sequence at the very end of the haystack counts
//! as a gap, so a stream holds it back with the secret prefix before it.
//!
//! Matching on the skeleton stays bounded: a run of gaps longer than [`MAX_GAP_RUN`] bytes
//! breaks the skeleton into segments, and no match spans two segments. A secret with gaps
//! inserted is therefore at most `len + (len - 1) * MAX_GAP_RUN` bytes long.

use std::ops::Range;

use zeroize::Zeroizing;

/// The most parameter bytes in an ANSI colour sequence treated as a gap.
pub(super) const MAX_SGR_PARAMS: usize = 16;

/// The longest run of gap bytes a match may span.
pub(super) const MAX_GAP_RUN: usize = 32;

/// A haystack with gap characters removed: its bytes (zeroized on drop), where each came
/// from, and the segments between over-long gap runs.
pub(super) struct Skeleton {
    bytes: Zeroizing<Vec<u8>>,
    /// `origin[i]` is the haystack position of `bytes[i]`.
    origin: Vec<usize>,
    segments: Vec<Range<usize>>,
}

/// A cheap, vectorisable test: false means the haystack holds no gap (true may be wrong).
fn may_hold_gap(hay: &[u8]) -> bool {
    hay.chunks(64).any(|c| {
        c.iter().fold(false, |acc, &b| {
            acc | ((b < 0x20) & (b != b'\t') & (b != b'\n') & (b != b'\r'))
                | (b == 0x7f)
                | (b == 0xe2)
                | (b == 0xef)
        })
    })
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
            let params = rest[2..]
                .iter()
                .take(MAX_SGR_PARAMS + 1)
                .take_while(|b| b.is_ascii_digit() || **b == b';')
                .count();
            match rest.get(2 + params) {
                None if params <= MAX_SGR_PARAMS => rest.len(),
                Some(b'm') if params <= MAX_SGR_PARAMS => 3 + params,
                _ => 1,
            }
        }
        b'\t' | b'\n' | b'\r' => 0,
        b if b < 0x20 || b == 0x7f => 1,
        0xe2 => match rest {
            [_, 0x80, 0x8b..=0x8d, ..] => 3,
            [_] | [_, 0x80] => rest.len(),
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
    /// one fast pass).
    pub(super) fn build(hay: &[u8]) -> Option<Skeleton> {
        if !may_hold_gap(hay) {
            return None;
        }
        let first = (0..hay.len()).find(|&i| gap_len(hay, i) > 0)?;
        let mut bytes = Zeroizing::new(Vec::with_capacity(hay.len()));
        let mut origin = Vec::with_capacity(hay.len());
        bytes.extend_from_slice(&hay[..first]);
        origin.extend(0..first);
        let mut segments = Vec::new();
        let mut seg_start = 0;
        let mut run = 0;
        let mut i = first;
        while i < hay.len() {
            let g = gap_len(hay, i);
            if g > 0 {
                run += g;
                i += g;
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
        segments.push(seg_start..bytes.len());
        Some(Skeleton {
            bytes,
            origin,
            segments,
        })
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
