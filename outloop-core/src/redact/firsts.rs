//! The set of bytes that begin some searched form, tested 64 positions at a time.
//!
//! A stream's held tail is looked for among the last `min_len - 1` positions of every chunk
//! (see `Inner::prefix_start`): each position whose byte begins some form is tried. Tested
//! byte by byte, that is about 400 instructions per 4 KiB chunk, more than any other fixed
//! cost of a push; on x86-64 with AVX2 it is four table lookups per 32 bytes,
//! over-approximated (a candidate is then tested exactly): the first byte of some form,
//! followed by a byte that is the second byte of some form. The exact tests of the
//! candidates are unpredictable branches: with the first-byte test alone, they and the loop
//! around them took 6.3% of a stream fed 4 KiB chunks of JSON (perf, one secret), and 3.6%
//! with the second-byte test as well.

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
    /// The same for the second bytes of the forms ([`FirstBytes::insert_second`]).
    second_high: [u8; 16],
    second_low: [u8; 16],
}

impl FirstBytes {
    /// An empty set.
    pub(super) fn new() -> Self {
        Self {
            exact: [false; 256],
            high: [0; 16],
            low: [0; 16],
            second_high: [0; 16],
            second_low: [0; 16],
        }
    }

    /// Adds byte `b`.
    pub(super) fn insert(&mut self, b: u8) {
        self.exact[usize::from(b)] = true;
        let class = 1 << (b & 7);
        self.high[usize::from(b >> 4)] |= class;
        self.low[usize::from(b & 15)] |= class;
    }

    /// Adds byte `b` as the second byte of some form: [`FirstBytes::candidates`] passes a
    /// position only if the byte after it is one of these (or is unknown).
    pub(super) fn insert_second(&mut self, b: u8) {
        let class = 1 << (b & 7);
        self.second_high[usize::from(b >> 4)] |= class;
        self.second_low[usize::from(b & 15)] |= class;
    }

    /// Whether `b` is in the set (exact).
    pub(super) fn contains(&self, b: u8) -> bool {
        self.exact[usize::from(b)]
    }

    /// Bit `i` set for each byte `block[i]` that may be in the set: every byte in it, and
    /// on x86-64 with AVX2 some others (see [`FirstBytes::high`]). There, a position also
    /// needs the byte after it to be among the second bytes ([`FirstBytes::insert_second`],
    /// approximated the same way); the last position, whose next byte is not in `block`,
    /// is not held to that.
    pub(super) fn candidates(&self, block: &[u8; 64]) -> u64 {
        #[cfg(target_arch = "x86_64")]
        if let Some(simd) = pulp::x86::V3::try_new() {
            use crate::redact::gaps::avx2::members;
            return simd.vectorize(|| {
                let first = members(simd, &self.high, &self.low, block);
                let second = members(simd, &self.second_high, &self.second_low, block);
                first & (second >> 1 | 1 << 63)
            });
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Every byte in the set is a candidate at every position where a second byte follows
    /// it, and a byte is a candidate only if it or the byte differing in bit 3 is in the
    /// set. The second bytes here are every byte of the block but `0x01` and `0x09` (and
    /// `0x00` and `0x08`, which the approximation cannot tell from those), so positions
    /// before those are ruled out on x86-64 with AVX2.
    #[test]
    fn candidates_cover_the_set_and_little_else() {
        let sets: [&[u8]; 4] = [b"", b"F4Rf", b"\x00\x7f\x80\xff=+/", b"ACEGIKMOQSUWY"];
        let ruled_out = |b: u8| matches!(b, 0x00 | 0x01 | 0x08 | 0x09);
        // Whether `candidates` takes the AVX2 path here (`pulp::x86` exists only on x86).
        #[cfg(target_arch = "x86_64")]
        let vector = pulp::x86::V3::try_new().is_some();
        #[cfg(not(target_arch = "x86_64"))]
        let vector = false;
        for set in sets {
            let mut firsts = FirstBytes::new();
            for &b in set {
                firsts.insert(b);
            }
            for b in 2..=255u8 {
                if !ruled_out(b) {
                    firsts.insert_second(b);
                }
            }
            for start in 0..=255u8 {
                let block: [u8; 64] =
                    std::array::from_fn(|i| start.wrapping_add((i as u8).wrapping_mul(5)));
                let got = firsts.candidates(&block);
                for (i, &b) in block.iter().enumerate() {
                    let hit = got >> i & 1 == 1;
                    let next_ruled_out = block.get(i + 1).is_some_and(|&n| ruled_out(n));
                    if set.contains(&b) && !next_ruled_out {
                        assert!(hit, "{b:#04x} at {i} missed (set {set:?})");
                    }
                    if vector && next_ruled_out {
                        assert!(!hit, "{b:#04x} at {i} passed before {:#04x}", block[i + 1]);
                    }
                    if hit {
                        assert!(
                            set.contains(&b) || set.contains(&(b ^ 8)),
                            "{b:#04x} at {i} passed (set {set:?})"
                        );
                    }
                }
                let exact = firsts.exact_bits(&block);
                let followed = (0..64)
                    .filter(|&i| block.get(i + 1).is_none_or(|&n| !ruled_out(n)))
                    .fold(0u64, |bits, i| bits | 1 << i);
                assert_eq!(got & exact & followed, exact & followed);
            }
        }
        // A first byte followed by a byte that is no second byte is ruled out; followed by
        // one that is, it passes.
        let mut firsts = FirstBytes::new();
        firsts.insert(b'F');
        firsts.insert_second(b'A');
        let pairs = |second: u8| -> [u8; 64] { std::array::from_fn(|i| [b'F', second][i % 2]) };
        let even = 0x5555_5555_5555_5555_u64;
        assert_eq!(firsts.candidates(&pairs(b'A')), even);
        assert_eq!(
            firsts.candidates(&pairs(b'z')),
            if vector { 0 } else { even }
        );
        // The last position's next byte is unknown: it passes.
        let ends_first: [u8; 64] = std::array::from_fn(|i| [b'z', b'F'][i % 2]);
        let want = if vector { 1 << 63 } else { !even };
        assert_eq!(firsts.candidates(&ends_first), want);
    }
}
