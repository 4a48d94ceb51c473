//! Multi-buffer SHA-256: the compression function run on four independent
//! messages at once, for the `hashsearch` kernel in WebAssembly.
//!
//! The layout is "vertical": every state word and every message word is a
//! [`Lanes`], one `u32` per message, and every step is the same operation on
//! all four lanes, one `simd128` instruction in WebAssembly, so four blocks
//! cost little more than one does in scalar code. Elsewhere the same steps are
//! plain lane-wise loops: correct everywhere, tested natively against `sha2`,
//! but not fast (natively `hashsearch` uses `sha2`, which has SHA-NI).

/// One 32-bit word of each of the four messages.
pub type Lanes = [u32; 4];

/// The initial hash value of SHA-256 (FIPS 180-4, 5.3.3).
pub const INITIAL_STATE: [u32; 8] = [
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];

/// The round constants (FIPS 180-4, 4.2.2).
const K: [u32; 64] = [
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
];

/// Four `u32` lanes as one value, with the few operations SHA-256 needs.
///
/// WebAssembly with `simd128` gets intrinsics: LLVM vectorises the portable
/// loops only in part there (its wasm output kept every rotation scalar, with
/// lanes moved in and out of vectors around them). Everywhere else, and in the
/// tests, the same operations are lane-wise loops over `[u32; 4]`.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod vector {
    use core::arch::wasm32::{
        u32x4, u32x4_add, u32x4_extract_lane, u32x4_shl, u32x4_shr, v128, v128_and, v128_or,
        v128_xor,
    };

    #[derive(Clone, Copy)]
    pub struct U32x4(v128);

    impl U32x4 {
        #[inline(always)]
        pub fn new(lanes: [u32; 4]) -> Self {
            U32x4(u32x4(lanes[0], lanes[1], lanes[2], lanes[3]))
        }

        #[inline(always)]
        pub fn splat(word: u32) -> Self {
            U32x4(core::arch::wasm32::u32x4_splat(word))
        }

        #[inline(always)]
        pub fn lanes(self) -> [u32; 4] {
            [
                u32x4_extract_lane::<0>(self.0),
                u32x4_extract_lane::<1>(self.0),
                u32x4_extract_lane::<2>(self.0),
                u32x4_extract_lane::<3>(self.0),
            ]
        }

        #[inline(always)]
        pub fn add(self, other: Self) -> Self {
            U32x4(u32x4_add(self.0, other.0))
        }

        #[inline(always)]
        pub fn xor(self, other: Self) -> Self {
            U32x4(v128_xor(self.0, other.0))
        }

        #[inline(always)]
        pub fn and(self, other: Self) -> Self {
            U32x4(v128_and(self.0, other.0))
        }

        #[inline(always)]
        pub fn or(self, other: Self) -> Self {
            U32x4(v128_or(self.0, other.0))
        }

        #[inline(always)]
        pub fn shr(self, n: u32) -> Self {
            U32x4(u32x4_shr(self.0, n))
        }

        #[inline(always)]
        pub fn rotr(self, n: u32) -> Self {
            U32x4(v128_or(u32x4_shr(self.0, n), u32x4_shl(self.0, 32 - n)))
        }
    }
}

#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
mod vector {
    #[derive(Clone, Copy)]
    pub struct U32x4([u32; 4]);

    impl U32x4 {
        #[inline(always)]
        pub fn new(lanes: [u32; 4]) -> Self {
            U32x4(lanes)
        }

        #[inline(always)]
        pub fn splat(word: u32) -> Self {
            U32x4([word; 4])
        }

        #[inline(always)]
        pub fn lanes(self) -> [u32; 4] {
            self.0
        }

        #[inline(always)]
        fn zip(self, other: Self, f: impl Fn(u32, u32) -> u32) -> Self {
            U32x4([0, 1, 2, 3].map(|i| f(self.0[i], other.0[i])))
        }

        #[inline(always)]
        pub fn add(self, other: Self) -> Self {
            self.zip(other, u32::wrapping_add)
        }

        #[inline(always)]
        pub fn xor(self, other: Self) -> Self {
            self.zip(other, |a, b| a ^ b)
        }

        #[inline(always)]
        pub fn and(self, other: Self) -> Self {
            self.zip(other, |a, b| a & b)
        }

        #[inline(always)]
        pub fn or(self, other: Self) -> Self {
            self.zip(other, |a, b| a | b)
        }

        #[inline(always)]
        pub fn shr(self, n: u32) -> Self {
            U32x4(self.0.map(|x| x >> n))
        }

        #[inline(always)]
        pub fn rotr(self, n: u32) -> Self {
            U32x4(self.0.map(|x| x.rotate_right(n)))
        }
    }
}

use vector::U32x4;

/// Σ0, Σ1, σ0 and σ1 of FIPS 180-4, 4.1.2.
#[inline(always)]
fn big_sigma0(x: U32x4) -> U32x4 {
    x.rotr(2).xor(x.rotr(13)).xor(x.rotr(22))
}

#[inline(always)]
fn big_sigma1(x: U32x4) -> U32x4 {
    x.rotr(6).xor(x.rotr(11)).xor(x.rotr(25))
}

#[inline(always)]
fn small_sigma0(x: U32x4) -> U32x4 {
    x.rotr(7).xor(x.rotr(18)).xor(x.shr(3))
}

#[inline(always)]
fn small_sigma1(x: U32x4) -> U32x4 {
    x.rotr(17).xor(x.rotr(19)).xor(x.shr(10))
}

/// Ch(e, f, g) = (e ∧ f) ⊕ (¬e ∧ g), written as g ⊕ (e ∧ (f ⊕ g)).
#[inline(always)]
fn choose(e: U32x4, f: U32x4, g: U32x4) -> U32x4 {
    g.xor(e.and(f.xor(g)))
}

/// Maj(a, b, c) = (a ∧ b) ⊕ (a ∧ c) ⊕ (b ∧ c), written as (a ∧ b) ∨ (c ∧ (a ∨ b)).
#[inline(always)]
fn majority(a: U32x4, b: U32x4, c: U32x4) -> U32x4 {
    a.and(b).or(c.and(a.or(b)))
}

/// One round: `s` is (a, b, c, d, e, f, g, h), `kw` is K_t + W_t.
#[inline(always)]
fn round(s: &mut [U32x4; 8], kw: U32x4) {
    let [a, b, c, d, e, f, g, h] = *s;
    let t1 = h.add(big_sigma1(e)).add(choose(e, f, g)).add(kw);
    let t2 = big_sigma0(a).add(majority(a, b, c));
    *s = [t1.add(t2), a, b, c, d.add(t1), e, f, g];
}

/// Runs `$body` sixteen times with `$i` a constant 0..16: the rounds must be
/// unrolled for the message words to stay in registers (locals in wasm).
macro_rules! unroll16 {
    ($i:ident => $body:block) => {
        unroll16!(@ $i $body 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15)
    };
    (@ $i:ident $body:block $($n:literal)*) => {
        $({
            const $i: usize = $n;
            $body
        })*
    };
}

/// A state of four SHA-256 computations, word by word.
pub type State = [Lanes; 8];

/// The same eight-word state in every lane.
pub fn splat(state: &[u32; 8]) -> State {
    state.map(|word| [word; 4])
}

/// Compresses one 64-byte block per lane into `state`: the block's sixteen
/// big-endian words, word by word, one lane per message.
pub fn compress(state: &mut State, block: &[Lanes; 16]) {
    let mut w = block.map(U32x4::new);
    let mut s = state.map(U32x4::new);
    unroll16!(I => {
        round(&mut s, w[I].add(U32x4::splat(K[I])));
    });
    for t in (16..64).step_by(16) {
        unroll16!(I => {
            // The message schedule in place: w[I] becomes W_{t+I}.
            w[I] = w[I]
                .add(small_sigma0(w[(I + 1) % 16]))
                .add(w[(I + 9) % 16])
                .add(small_sigma1(w[(I + 14) % 16]));
            round(&mut s, w[I].add(U32x4::splat(K[t + I])));
        });
    }
    for (word, new) in state.iter_mut().zip(s) {
        *word = U32x4::new(*word).add(new).lanes();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Lane `lane` of a four-lane state, as one SHA-256 state.
    fn lane(state: &State, lane: usize) -> [u32; 8] {
        state.map(|word| word[lane])
    }

    fn words(block: &[u8; 64]) -> [u32; 16] {
        std::array::from_fn(|i| u32::from_be_bytes(block[4 * i..4 * i + 4].try_into().unwrap()))
    }

    /// Compresses the blocks of each lane with this module and with `sha2`:
    /// `bytes` is a run of 256-byte groups, one 64-byte block per lane each.
    fn check(start: [[u32; 8]; 4], bytes: &[u8]) {
        let blocks: Vec<[[u8; 64]; 4]> = bytes
            .chunks_exact(256)
            .map(|group| std::array::from_fn(|l| group[64 * l..64 * l + 64].try_into().unwrap()))
            .collect();
        let mut state: State = std::array::from_fn(|w| std::array::from_fn(|l| start[l][w]));
        for lanes in &blocks {
            let lane_words = lanes.map(|block| words(&block));
            let block: [Lanes; 16] =
                std::array::from_fn(|w| std::array::from_fn(|l| lane_words[l][w]));
            compress(&mut state, &block);
        }
        for (l, &initial) in start.iter().enumerate() {
            let mut expected = initial;
            let lane_blocks: Vec<[u8; 64]> = blocks.iter().map(|lanes| lanes[l]).collect();
            sha2::block_api::compress256(&mut expected, &lane_blocks);
            assert_eq!(lane(&state, l), expected, "lane {l}");
        }
    }

    #[test]
    fn hashes_abc_in_every_lane() {
        // FIPS 180-2's "abc", padded by hand, in all four lanes.
        let mut block = [0u8; 64];
        block[..4].copy_from_slice(b"abc\x80");
        block[63] = 24;
        let mut state = splat(&INITIAL_STATE);
        compress(&mut state, &words(&block).map(|word| [word; 4]));
        for l in 0..4 {
            let digest: Vec<u8> = lane(&state, l)
                .iter()
                .flat_map(|w| w.to_be_bytes())
                .collect();
            assert_eq!(
                digest,
                <[u8; 32]>::from(<sha2::Sha256 as sha2::Digest>::digest(b"abc"))
            );
        }
    }

    proptest! {
        #[test]
        fn equals_sha2_on_random_blocks(
            start in any::<[[u32; 8]; 4]>(),
            bytes in (1usize..4).prop_flat_map(|n| prop::collection::vec(any::<u8>(), 256 * n)),
        ) {
            check(start, &bytes);
        }
    }
}
