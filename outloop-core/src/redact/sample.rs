//! The q-gram sampling prefilter that keeps the automaton off text that cannot hold a secret.
//!
//! Every searched form is at least `min_len` bytes long. Reading the haystack's q-byte
//! windows (q-grams) only at positions `0, S, 2S, …` with `S = min_len - q + 1`, every
//! occurrence of a form fully contains at least one sampled window, and that window is one of
//! the form's own q-grams. So a sampled window that is no form's q-gram rules out every match
//! around it, and the automaton only has to run near the windows that are: within
//! `max_len - q` bytes before and `max_len` bytes after one.
//!
//! The set of the forms' q-grams is a blocked Bloom filter (one 512-bit block per lookup, two
//! bits per q-gram, about 32 bits per q-gram in total, so a false hit costs one window search
//! on well under 1% of samples). q-grams are compared ASCII-lowercased on both sides, so the
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
    /// The forms' longest length: how far around a hit a match may reach.
    max_len: usize,
    /// Every q-gram of every form.
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
        let max_len = forms.clone().map(<[u8]>::len).max()?;
        let q = match min_len {
            16.. => 8,
            8.. => 4,
            _ => return None,
        };
        let expected: usize = forms.clone().map(|f| f.len() - q + 1).sum();
        let mut qgrams = QgramSet::with_capacity(q, expected);
        for form in forms {
            for at in 0..=form.len() - q {
                qgrams.insert(&form[at..]);
            }
        }
        Some(Self {
            stride: min_len - q + 1,
            max_len,
            qgrams,
        })
    }

    /// The disjoint ranges of `hay`, in order, outside which no form occurs that starts
    /// before `limit`: every such occurrence lies wholly inside one range.
    pub(super) fn regions<'h>(&'h self, hay: &'h [u8], limit: usize) -> Regions<'h> {
        // A match starting before `limit` is at most `max_len` long, so its sampled window
        // starts before `limit + max_len - q`.
        let end = hay
            .len()
            .saturating_sub(self.qgrams.q - 1)
            .min(limit.saturating_add(self.max_len));
        Regions {
            sampler: self,
            hay,
            next: 0,
            end,
            open: None,
        }
    }
}

/// The iterator returned by [`Sampler::regions`].
pub(super) struct Regions<'h> {
    sampler: &'h Sampler,
    hay: &'h [u8],
    /// The next window position to sample.
    next: usize,
    /// Sample only positions before this.
    end: usize,
    /// The region being grown by consecutive hits.
    open: Option<Range<usize>>,
}

impl Iterator for Regions<'_> {
    type Item = Range<usize>;

    fn next(&mut self) -> Option<Range<usize>> {
        let s = self.sampler;
        while self.next < self.end {
            let at = self.next;
            self.next += s.stride;
            if !s.qgrams.contains(&self.hay[at..]) {
                continue;
            }
            let lo = (at + s.qgrams.q).saturating_sub(s.max_len);
            let hi = (at + s.max_len).min(self.hay.len());
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

    /// Every occurrence of a form, at every offset, lies inside one region, for both window
    /// lengths and in either case.
    #[test]
    fn every_occurrence_is_inside_a_region() {
        for form in [&b"FAKEtok1"[..], b"FAKE-0123456789abcdef-token"] {
            let sampler = Sampler::new([form].into_iter()).expect("sampler");
            for offset in 0..80 {
                let mut hay = vec![b'.'; offset];
                hay.extend_from_slice(&form.to_ascii_uppercase());
                hay.extend_from_slice(&[b' '; 40]);
                let end = offset + form.len();
                let regions: Vec<_> = sampler.regions(&hay, hay.len()).collect();
                assert!(
                    regions.iter().any(|r| r.start <= offset && end <= r.end),
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
        assert_eq!(sampler.regions(&hay, hay.len()).count(), 0);
    }
}
