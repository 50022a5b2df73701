//! The set of bytes that begin some searched form, tested 64 positions at a time.
//!
//! A stream's held tail is looked for among the last `min_len - 1` positions of every chunk
//! (see `Inner::prefix_start`): each position whose byte begins some form is tried. Tested
//! byte by byte, that is about 400 instructions per 4 KiB chunk, more than any other fixed
//! cost of a push; on x86-64 with AVX2 it is two table lookups per 32 bytes,
//! over-approximated (a candidate is then tested exactly).

/// The bytes that begin some form: exactly, and as two nibble tables for the vector test.
/// No `Debug`: the set is the first byte of every form of every secret.
pub(super) struct FirstBytes {
    exact: [bool; 256],
    /// For each byte `f` in the set, bit `f & 7` of `high[f >> 4]` and of `low[f & 15]`.
    /// A byte `x` with `high[x >> 4] & low[x & 15] != 0` shares its high nibble and its low
    /// three bits with some `f` in the set, so `x` is `f` or `f ^ 8`: at most twice as many
    /// bytes pass as are in the set.
    high: [u8; 16],
    low: [u8; 16],
}

impl FirstBytes {
    /// An empty set.
    pub(super) fn new() -> Self {
        Self {
            exact: [false; 256],
            high: [0; 16],
            low: [0; 16],
        }
    }

    /// Adds byte `b`.
    pub(super) fn insert(&mut self, b: u8) {
        self.exact[usize::from(b)] = true;
        let class = 1 << (b & 7);
        self.high[usize::from(b >> 4)] |= class;
        self.low[usize::from(b & 15)] |= class;
    }

    /// Whether `b` is in the set (exact).
    pub(super) fn contains(&self, b: u8) -> bool {
        self.exact[usize::from(b)]
    }

    /// Bit `i` set for each byte `block[i]` that may be in the set: every byte in it, and
    /// on x86-64 with AVX2 some others (see [`FirstBytes::high`]).
    pub(super) fn candidates(&self, block: &[u8; 64]) -> u64 {
        #[cfg(target_arch = "x86_64")]
        if let Some(simd) = pulp::x86::V3::try_new() {
            return simd.vectorize(|| avx2::candidates(simd, &self.high, &self.low, block));
        }
        self.exact_bits(block)
    }

    /// Bit `i` set exactly for each byte `block[i]` in the set; `block` holds at most 64
    /// bytes. Out of line: with AVX2, only haystacks under 64 bytes reach it.
    #[inline(never)]
    pub(super) fn exact_bits(&self, block: &[u8]) -> u64 {
        debug_assert!(block.len() <= 64);
        block
            .iter()
            .enumerate()
            .fold(0, |bits, (i, &b)| bits | u64::from(self.contains(b)) << i)
    }
}

/// The AVX2 form of [`FirstBytes::candidates`], through `pulp`'s safe wrappers of the
/// `core::arch` intrinsics (run inside `V3::vectorize`, like `gaps::avx2`).
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use pulp::x86::V3;

    use crate::redact::gaps::avx2::{classify, lanes};

    /// See [`FirstBytes::candidates`](super::FirstBytes::candidates).
    #[inline(always)]
    pub(super) fn candidates(simd: V3, high: &[u8; 16], low: &[u8; 16], block: &[u8; 64]) -> u64 {
        let (avx, avx2) = (simd.avx, simd.avx2);
        let (high, low) = (lanes(*high), lanes(*low));
        let zero = avx._mm256_setzero_si256();
        // 0xff where the byte may be in the set, as the top bit of each byte.
        let half = |bytes: &[u8; 32]| {
            let class = classify(simd, high, low, pulp::cast(*bytes));
            let outside = avx2._mm256_cmpeq_epi8(class, zero);
            u64::from(!(avx2._mm256_movemask_epi8(outside) as u32))
        };
        let (halves, _) = block.as_chunks::<32>();
        half(&halves[0]) | half(&halves[1]) << 32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every byte in the set is a candidate at every position, and a byte is a candidate
    /// only if it or the byte differing in bit 3 is in the set.
    #[test]
    fn candidates_cover_the_set_and_little_else() {
        let sets: [&[u8]; 4] = [b"", b"F4Rf", b"\x00\x7f\x80\xff=+/", b"ACEGIKMOQSUWY"];
        for set in sets {
            let mut firsts = FirstBytes::new();
            for &b in set {
                firsts.insert(b);
            }
            for start in 0..=255u8 {
                let block: [u8; 64] =
                    std::array::from_fn(|i| start.wrapping_add((i as u8).wrapping_mul(5)));
                let got = firsts.candidates(&block);
                for (i, &b) in block.iter().enumerate() {
                    let hit = got >> i & 1 == 1;
                    if set.contains(&b) {
                        assert!(hit, "{b:#04x} at {i} missed (set {set:?})");
                    }
                    if hit {
                        assert!(
                            set.contains(&b) || set.contains(&(b ^ 8)),
                            "{b:#04x} at {i} passed (set {set:?})"
                        );
                    }
                }
                let exact = firsts.exact_bits(&block);
                assert_eq!(got & exact, exact);
            }
        }
    }
}
