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
//! The set of q-grams is a register-blocked Bloom filter: each q-gram sets four bits of one
//! 64-bit word, so a lookup is one hash, one read and one mask test. It has a power-of-two
//! number of words, at least 16 bits per distinct q-gram and under 32: under 1% of samples
//! hit falsely (0.64% at most in a review's measurement on log text), and the filter stays
//! small enough to stay in the L2 cache while input streams past it (3,000 forms of 32 bytes:
//! 256 KiB). q-grams are compared with ASCII case folded on both sides, so the same filter
//! serves the case-insensitive (folded) forms; that only adds false hits.
//!
//! With forms of the usual length for API tokens (30 bytes and more) the filter reads one
//! window per 23 bytes or more, which is why redaction runs much faster than a scan of every
//! byte by the automaton. With very short forms (below 8 bytes) there is no filter and the
//! automaton reads everything.

use std::ops::Range;

use zeroize::{Zeroize, Zeroizing};

/// The fewest bits per distinct q-gram in the filter (four of them set per q-gram, in one
/// word); rounding the word count up to a power of two gives up to twice as many.
const BITS_PER_QGRAM: usize = 16;

/// The smallest and largest filter, as a power of two of 64-bit words (4 KiB and 4 MiB).
const MIN_WORD_BITS: u32 = 9;
const MAX_WORD_BITS: u32 = 19;

/// The q-gram sampler over a fixed set of forms. Its `Debug` shows sizes only.
pub(super) struct Sampler {
    /// Distance between sampled windows: `min_len - q + 1`.
    stride: usize,
    /// Each form's q-grams at offsets `0..stride`.
    qgrams: QgramSet,
}

/// A set of case-folded q-grams (q = 4 or 8) as a register-blocked Bloom filter: `contains`
/// may say yes wrongly (rarely), never no wrongly.
///
/// The filter's bits say which q-grams the secrets hold, so `Debug` shows sizes only and the
/// words are zeroed on drop.
pub(super) struct QgramSet {
    q: usize,
    /// `1 << word_bits` words.
    words: Box<[u64]>,
    /// `64 - word_bits`: the shift that leaves a hash's top `word_bits` bits (a word index).
    shift: u32,
}

impl std::fmt::Debug for Sampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sampler")
            .field("stride", &self.stride)
            .field("qgrams", &self.qgrams)
            .finish()
    }
}

impl std::fmt::Debug for QgramSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QgramSet")
            .field("q", &self.q)
            .field("filter_words", &self.words.len())
            .finish_non_exhaustive()
    }
}

impl Drop for QgramSet {
    fn drop(&mut self) {
        self.words.zeroize();
    }
}

impl QgramSet {
    /// An empty set of `q`-grams (4 or 8) sized for about `expected` of them.
    pub(super) fn with_capacity(q: usize, expected: usize) -> Self {
        debug_assert!(q == 4 || q == 8);
        let wanted = (expected.saturating_mul(BITS_PER_QGRAM) / 64).max(1);
        let word_bits = wanted
            .next_power_of_two()
            .trailing_zeros()
            .clamp(MIN_WORD_BITS, MAX_WORD_BITS);
        Self {
            q,
            words: vec![0; 1 << word_bits].into_boxed_slice(),
            shift: 64 - word_bits,
        }
    }

    /// Adds the q-gram at the start of `bytes` (which holds at least `q` bytes).
    pub(super) fn insert(&mut self, bytes: &[u8]) {
        self.insert_key(self.key(bytes));
    }

    /// Adds a q-gram given as its key ([`QgramSet::key_of`]).
    fn insert_key(&mut self, key: u64) {
        let (word, mask) = Self::locate(key, self.shift);
        self.words[word] |= mask;
    }

    /// The case-folded q-gram at the start of `bytes` (which holds at least `q` bytes).
    fn key(&self, bytes: &[u8]) -> u64 {
        Self::key_of(self.q, bytes)
    }

    /// The `q`-gram at the start of `bytes` (which holds at least `q` bytes), as a
    /// little-endian integer with bit 5 of every byte set: ASCII capitals become lower case,
    /// and so does every other pair of bytes that differ only in bit 5 (`[` and `{`, a digit
    /// and a control byte, `_` and DEL): that only adds false hits.
    #[inline(always)]
    fn key_of(q: usize, bytes: &[u8]) -> u64 {
        if q == 8 {
            u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) | FOLD
        } else {
            u64::from(u32::from_le_bytes(bytes[..4].try_into().expect("4 bytes")) | FOLD as u32)
        }
    }

    /// The word (of `1 << (64 - shift)`) and the four bits within it that stand for `key`.
    /// The key is first XOR-ed with itself shifted right by 31 (an 8-byte key's upper half
    /// lands on its lower bits; a 4-byte key only moves bit 31 onto bit 0), then multiplied
    /// by an odd constant (Fibonacci hashing): the top bits of the product, which depend on
    /// every bit of the key, pick the word, and the 10 bits below them the [`MASKS`] entry.
    ///
    /// Without the XOR, q-grams of text and of one secret's forms, which differ mostly in
    /// their high bytes, shared masks so often that sampling 1 MiB of log text flagged 151
    /// windows where it flags 32 (the 16 echoed secrets among them).
    #[inline(always)]
    fn locate(key: u64, shift: u32) -> (usize, u64) {
        let h = (key ^ (key >> 31)).wrapping_mul(MULTIPLIER);
        let mask = MASKS[(h >> (shift - 10)) as usize & 1023];
        ((h >> shift) as usize, mask)
    }

    /// Whether the word [`QgramSet::locate`] picks for `key` has all four of its bits set.
    #[inline(always)]
    fn holds(&self, key: u64) -> bool {
        let (word, mask) = Self::locate(key, self.shift);
        self.words[word] & mask == mask
    }

    /// The first of the windows of `hay` at `from`, `from + stride`, … that start before
    /// `end` and may be in the set, or `None`. Every such window must hold `q` bytes.
    ///
    /// A tight loop whose iterations share nothing but the position: the processor runs
    /// ahead through the (predicted) misses, so the reads of many windows overlap.
    fn next_hit(&self, hay: &[u8], from: usize, end: usize, stride: usize) -> Option<usize> {
        // With the x86-64-v3 features (BMI2's shifts by a register) the loop is a few
        // instructions shorter.
        #[cfg(target_arch = "x86_64")]
        if let Some(simd) = pulp::x86::V3::try_new() {
            return simd.vectorize(|| self.next_hit_inline(hay, from, end, stride));
        }
        self.next_hit_inline(hay, from, end, stride)
    }

    /// [`QgramSet::next_hit`], inlined into its caller (and so compiled with its target
    /// features).
    #[inline(always)]
    fn next_hit_inline(&self, hay: &[u8], from: usize, end: usize, stride: usize) -> Option<usize> {
        if self.q == 8 {
            self.next_hit_q::<8>(hay, from, end, stride)
        } else {
            self.next_hit_q::<4>(hay, from, end, stride)
        }
    }

    /// [`QgramSet::next_hit`] for `Q`-grams.
    #[inline(always)]
    fn next_hit_q<const Q: usize>(
        &self,
        hay: &[u8],
        from: usize,
        end: usize,
        stride: usize,
    ) -> Option<usize> {
        // The filter's fields in locals, so they stay in registers through the loop.
        let (words, shift) = (&*self.words, self.shift);
        let mut at = from;
        while at < end {
            let gram = hay[at..].first_chunk::<Q>()?;
            let (word, mask) = Self::locate(Self::key_of(Q, gram), shift);
            if words[word] & mask == mask {
                return Some(at);
            }
            at += stride;
        }
        None
    }

    /// Whether the q-gram at the start of `bytes` (at least `q` bytes), ignoring ASCII case,
    /// may be in the set.
    pub(super) fn contains(&self, bytes: &[u8]) -> bool {
        self.holds(self.key(bytes))
    }
}

/// Bit 5 of every byte: OR-ed into a q-gram to fold ASCII case.
const FOLD: u64 = 0x2020_2020_2020_2020;

/// The odd multiplier of the hash (2^64 divided by the golden ratio).
const MULTIPLIER: u64 = 0x9e37_79b9_7f4a_7c15;

/// 1,024 words with four distinct bits set each, picked by a fixed xorshift sequence: a
/// q-gram's bits in its filter word (a table read is cheaper than four variable shifts).
static MASKS: [u64; 1024] = {
    let mut masks = [0; 1024];
    let mut x: u64 = MULTIPLIER;
    let mut i = 0;
    while i < masks.len() {
        let mut mask: u64 = 0;
        while mask.count_ones() < 4 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            mask |= 1 << (x >> 58);
        }
        masks[i] = mask;
        i += 1;
    }
    masks
};

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
        // The filter is sized for the distinct q-grams: encodings of one value share many
        // (upper- and lower-case hex fold together, standard and URL-safe base64 differ only
        // at `+` and `/`), and a smaller filter stays in cache. The keys are derived from
        // secrets, so the list is zeroized when dropped.
        let mut keys = Zeroizing::new(Vec::with_capacity(forms.clone().count() * stride));
        for form in forms {
            keys.extend((0..stride).map(|at| QgramSet::key_of(q, &form[at..])));
        }
        keys.sort_unstable();
        keys.dedup();
        let mut qgrams = QgramSet::with_capacity(q, keys.len());
        for &key in keys.iter() {
            qgrams.insert_key(key);
        }
        Some(Self { stride, qgrams })
    }

    /// The length of the shortest form: `stride + q - 1`.
    pub(super) fn min_len(&self) -> usize {
        self.stride + self.qgrams.q - 1
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
///
/// The same ranges hold every start of a *proper prefix* of a form at least `min_len` bytes
/// long that ends the haystack (what a stream must hold back): such a prefix, too, holds a
/// whole sampled window at an offset below the stride.
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
        loop {
            let Some(at) = s.qgrams.next_hit(self.hay, self.next, self.end, s.stride) else {
                // Sampled to the end: a later call must not scan the tail again.
                self.next = self.end;
                break;
            };
            self.next = at + s.stride;
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

    /// Folding puts a q-gram in either case under one key, and every mask has four bits.
    #[test]
    fn keys_fold_ascii_case_and_masks_have_four_bits() {
        for b in 0..=255u8 {
            let gram = [b, b'A', b'z', b'Z', b'@', b'0', 0xc1, b];
            let key = QgramSet::key_of(8, &gram);
            assert_eq!(
                key,
                QgramSet::key_of(8, &gram.to_ascii_lowercase()),
                "{b:#04x}"
            );
            assert_eq!(
                key,
                QgramSet::key_of(8, &gram.to_ascii_uppercase()),
                "{b:#04x}"
            );
            assert_eq!(
                QgramSet::key_of(4, &gram),
                QgramSet::key_of(4, &gram.to_ascii_uppercase())
            );
        }
        assert!(MASKS.iter().all(|m| m.count_ones() == 4));
    }

    /// `Debug` gives sizes, never the filter's words (which say what the secrets hold).
    #[test]
    fn debug_shows_sizes_not_filter_bits() {
        let sampler = Sampler::new([&b"FAKE-0123456789abcdef-token"[..]].into_iter()).unwrap();
        let shown = format!("{sampler:?}");
        assert_eq!(
            shown,
            format!(
                "Sampler {{ stride: {}, qgrams: QgramSet {{ q: 8, filter_words: {}, .. }} }}",
                sampler.stride,
                sampler.qgrams.words.len()
            )
        );
        let set_word = sampler.qgrams.words.iter().find(|&&w| w != 0).unwrap();
        assert!(!shown.contains(&set_word.to_string()), "{shown}");
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

    /// The filter holds every q-gram put in (in either case), and says yes to under 2% of
    /// others at its designed 16 bits per q-gram.
    #[test]
    fn filter_has_no_false_negatives_and_few_false_positives() {
        let mut x = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let inserted: Vec<[u8; 8]> = (0..20_000).map(|_| next().to_le_bytes()).collect();
        let mut set = QgramSet::with_capacity(8, inserted.len());
        for q in &inserted {
            set.insert(&q.to_ascii_lowercase());
        }
        for q in &inserted {
            assert!(set.contains(q) && set.contains(&q.to_ascii_uppercase()));
        }
        let tries = 200_000;
        let false_hits = (0..tries)
            .filter(|_| set.contains(&next().to_le_bytes()))
            .count();
        assert!(
            false_hits * 50 < tries,
            "{false_hits} false hits of {tries}"
        );
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
