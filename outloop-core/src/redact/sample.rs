//! The q-gram sampling prefilter that keeps the automaton off text that cannot hold a secret.
//!
//! Every searched form is at least `min_len` bytes long. Reading the haystack's q-byte
//! windows (q-grams) only at positions `0, S, 2S, …` with `S = min_len - q + 1`, the first
//! sampled window inside an occurrence of a form starts fewer than `S` bytes after the
//! occurrence and lies wholly inside it: it is the form's q-gram at an offset below `S`. So
//! only those q-grams of each form are kept, and a sampled window that is none of them rules
//! out every occurrence starting in the `S` positions up to it; for a window that is one,
//! the automaton makes an anchored search at each of those `S` positions (most end after a
//! byte or two).
//!
//! The set of q-grams is a blocked Bloom filter (one 512-bit block per lookup, two bits per
//! q-gram, about 32 bits per q-gram in total, so well under 1% of samples hit falsely). q-grams are compared ASCII-lowercased on both sides, so the
//! same filter serves the case-insensitive (folded) forms; that only adds false hits.
//!
//! With forms of the usual length for API tokens (30 bytes and more) the filter reads one
//! window per 23 bytes or more, which is why redaction runs much faster than a scan of every
//! byte by the automaton. With very short forms (below 8 bytes) there is no filter and the
//! automaton reads everything.

use std::ops::Range;

/// Bits per q-gram in the filter (two of them set per q-gram), before rounding up to a
/// power of two.
const BITS_PER_QGRAM: usize = 32;

/// The smallest and largest filter, in 512-bit blocks (8 KiB and 4 MiB).
const MIN_BLOCKS: usize = 1 << 7;
const MAX_BLOCKS: usize = 1 << 16;

/// The q-gram sampler over a fixed set of forms.
#[derive(Debug)]
pub(super) struct Sampler {
    /// Distance between sampled windows: `min_len - q + 1`.
    stride: usize,
    /// Each form's q-grams at offsets `0..stride`.
    qgrams: QgramSet,
}

/// A set of lowercased q-grams (q = 4 or 8) as a blocked Bloom filter: `contains` may say
/// yes wrongly (rarely), never no wrongly.
#[derive(Debug)]
pub(super) struct QgramSet {
    q: usize,
    /// `64 - log2(blocks.len())`: the shift that takes a hash to its block.
    shift: u32,
    blocks: Box<[[u64; 8]]>,
}

impl QgramSet {
    /// An empty set of `q`-grams (4 or 8) sized for about `expected` of them.
    pub(super) fn with_capacity(q: usize, expected: usize) -> Self {
        debug_assert!(q == 4 || q == 8);
        let blocks = (expected * BITS_PER_QGRAM / 512)
            .next_power_of_two()
            .clamp(MIN_BLOCKS, MAX_BLOCKS);
        Self {
            q,
            shift: 64 - blocks.trailing_zeros(),
            blocks: vec![[0u64; 8]; blocks].into_boxed_slice(),
        }
    }

    /// Adds the q-gram at the start of `bytes` (which holds at least `q` bytes).
    pub(super) fn insert(&mut self, bytes: &[u8]) {
        let (block, bits) = self.slot(self.key(bytes));
        for bit in bits {
            self.blocks[block][bit / 64] |= 1 << (bit % 64);
        }
    }

    /// The lowercased q-gram at the start of `bytes` (which holds at least `q` bytes).
    fn key(&self, bytes: &[u8]) -> u64 {
        let raw = if self.q == 8 {
            u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"))
        } else {
            u64::from(u32::from_le_bytes(bytes[..4].try_into().expect("4 bytes")))
        };
        lower(raw)
    }

    /// The block and the two bits within it that stand for `key`.
    fn slot(&self, key: u64) -> (usize, [usize; 2]) {
        let h = mix(key);
        let block = usize::try_from(h.checked_shr(self.shift).unwrap_or(0)).unwrap_or(0);
        let bits = [(h & 511) as usize, ((h >> 9) & 511) as usize];
        (block, bits)
    }

    /// Whether the q-gram at the start of `bytes` (at least `q` bytes), ignoring ASCII case,
    /// may be in the set.
    pub(super) fn contains(&self, bytes: &[u8]) -> bool {
        let (block, [a, b]) = self.slot(self.key(bytes));
        let words = &self.blocks[block];
        words[a / 64] & (1 << (a % 64)) != 0 && words[b / 64] & (1 << (b % 64)) != 0
    }
}

/// ASCII-lowercases each byte of `x` (bytes `A`–`Z` gain 0x20; all others unchanged).
fn lower(x: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let low7 = x & !HIGH;
    // High bit of each byte set when its low seven bits are >= 'A', resp. > 'Z'; no carry
    // crosses a byte, since 0x7f + 0x3f < 0x100.
    let at_least_a = low7.wrapping_add(ONES * u64::from(0x80 - b'A'));
    let above_z = low7.wrapping_add(ONES * u64::from(0x80 - b'Z' - 1));
    let upper = at_least_a & !above_z & !x & HIGH;
    x | (upper >> 2)
}

/// Mixes a q-gram into 64 well-spread bits (the finalizer of MurmurHash3's 64-bit variant).
fn mix(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

impl Sampler {
    /// Builds the sampler for `forms`, or `None` when some form is shorter than 8 bytes (the
    /// stride would be too short to pay off) or there are no forms.
    pub(super) fn new<'a>(forms: impl Iterator<Item = &'a [u8]> + Clone) -> Option<Self> {
        let min_len = forms.clone().map(<[u8]>::len).min()?;
        let q = match min_len {
            16.. => 8,
            8.. => 4,
            _ => return None,
        };
        let stride = min_len - q + 1;
        let mut qgrams = QgramSet::with_capacity(q, forms.clone().count() * stride);
        for form in forms {
            for at in 0..stride {
                qgrams.insert(&form[at..]);
            }
        }
        Some(Self { stride, qgrams })
    }

    /// The disjoint ranges of positions in `hay`, in order, outside which no form's
    /// occurrence starts before `limit`: every such occurrence starts inside one range.
    pub(super) fn starts<'h>(&'h self, hay: &'h [u8], limit: usize) -> Starts<'h> {
        // An occurrence starting before `limit` has its first sampled window before
        // `limit + stride - 1`, and that window lies inside the haystack.
        let end = hay
            .len()
            .saturating_sub(self.qgrams.q - 1)
            .min(limit.saturating_add(self.stride - 1));
        Starts {
            sampler: self,
            hay,
            limit,
            next: 0,
            end,
            open: None,
        }
    }
}

/// The iterator returned by [`Sampler::starts`].
pub(super) struct Starts<'h> {
    sampler: &'h Sampler,
    hay: &'h [u8],
    limit: usize,
    /// The next window position to sample.
    next: usize,
    /// Sample only positions before this.
    end: usize,
    /// The range being grown by consecutive hits.
    open: Option<Range<usize>>,
}

impl Iterator for Starts<'_> {
    type Item = Range<usize>;

    fn next(&mut self) -> Option<Range<usize>> {
        let s = self.sampler;
        while self.next < self.end {
            let at = self.next;
            self.next += s.stride;
            if !s.qgrams.contains(&self.hay[at..]) {
                continue;
            }
            let lo = (at + 1).saturating_sub(s.stride);
            let hi = (at + 1).min(self.limit);
            if lo >= hi {
                continue;
            }
            match &mut self.open {
                Some(open) if lo <= open.end => open.end = hi,
                Some(open) => {
                    let done = open.clone();
                    self.open = Some(lo..hi);
                    return Some(done);
                }
                None => self.open = Some(lo..hi),
            }
        }
        self.open.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lower_folds_only_ascii_capitals() {
        for b in 0..=255u8 {
            let x = u64::from_le_bytes([b, b'A', b'z', b'Z', b'@', b'[', 0xc1, b]);
            let want = u64::from_le_bytes([
                b.to_ascii_lowercase(),
                b'a',
                b'z',
                b'z',
                b'@',
                b'[',
                0xc1,
                b.to_ascii_lowercase(),
            ]);
            assert_eq!(lower(x), want, "byte {b:#04x}");
        }
    }

    #[test]
    fn no_sampler_below_eight_bytes() {
        let forms: [&[u8]; 2] = [b"FAKE-long-enough", b"FAKE-7b"];
        assert!(Sampler::new(forms.iter().copied()).is_none());
        assert!(Sampler::new(std::iter::empty::<&[u8]>()).is_none());
    }

    /// Every occurrence of a form, at every offset, starts inside one range, for both window
    /// lengths and in either case.
    #[test]
    fn every_occurrence_starts_inside_a_range() {
        for form in [&b"FAKEtok1"[..], b"FAKE-0123456789abcdef-token"] {
            let sampler = Sampler::new([form].into_iter()).expect("sampler");
            for offset in 0..80 {
                let mut hay = vec![b'.'; offset];
                hay.extend_from_slice(&form.to_ascii_uppercase());
                hay.extend_from_slice(&[b' '; 40]);
                let regions: Vec<_> = sampler.starts(&hay, hay.len()).collect();
                assert!(
                    regions.iter().any(|r| r.contains(&offset)),
                    "offset {offset}: {regions:?}"
                );
                for pair in regions.windows(2) {
                    assert!(pair[0].end < pair[1].start, "{regions:?}");
                }
            }
        }
    }

    /// Text that holds none of a form's q-grams yields no region at all.
    #[test]
    fn unrelated_text_yields_no_region() {
        let forms: [&[u8]; 1] = [b"FAKE-QWERTYUIOPASDFGHJKLZXCVBNM-0123"];
        let sampler = Sampler::new(forms.iter().copied()).expect("sampler");
        let hay = b"{\"id\": 1, \"name\": \"Ada Lovelace\", \"email\": \"ada@example.com\"}\n"
            .repeat(200);
        assert_eq!(sampler.starts(&hay, hay.len()).count(), 0);
    }
}
