//! The `hashsearch` kernel: nonces n for which SHA-256(prefix bytes followed by
//! the ASCII decimal of n, no leading zeros) has at least `difficulty` leading
//! zero bits, most significant bit of the first byte first.

use sha2::{Digest, Sha256};

/// Leading zero bits of a digest.
pub fn leading_zero_bits(digest: &[u8]) -> u32 {
    let mut bits = 0;
    for &byte in digest {
        if byte == 0 {
            bits += 8;
        } else {
            return bits + byte.leading_zeros();
        }
    }
    bits
}

/// The decimal digits of `n`, written into `buf`; returns the used tail.
fn decimal(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[at..];
        }
    }
}

/// SHA-256 of the prefix followed by the decimal of `nonce`.
pub fn digest(prefix: &[u8], nonce: u64) -> [u8; 32] {
    let mut buf = [0u8; 20];
    let mut hasher = Sha256::new();
    hasher.update(prefix);
    hasher.update(decimal(nonce, &mut buf));
    hasher.finalize().into()
}

/// Whether `nonce` meets the difficulty. The coordinator uses this to check
/// every nonce a worker claims.
pub fn meets(prefix: &[u8], nonce: u64, difficulty: u32) -> bool {
    leading_zero_bits(&digest(prefix, nonce)) >= difficulty
}

/// The qualifying nonces in `start..end`, ascending.
pub fn search(prefix: &[u8], difficulty: u32, start: u64, end: u64) -> Vec<u64> {
    let mut after_prefix = Sha256::new();
    after_prefix.update(prefix);
    let mut buf = [0u8; 20];
    let mut found = Vec::new();
    for nonce in start..end {
        let mut hasher = after_prefix.clone();
        hasher.update(decimal(nonce, &mut buf));
        let digest: [u8; 32] = hasher.finalize().into();
        if leading_zero_bits(&digest) >= difficulty {
            found.push(nonce);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn digests_hash_the_prefix_then_the_decimal() {
        // The FIPS 180-2 vector pins the hash itself; the rest pin the layout.
        assert_eq!(
            hex(&Sha256::digest(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(digest(b"abc", 1), <[u8; 32]>::from(Sha256::digest(b"abc1")));
        assert_eq!(digest(b"", 0), <[u8; 32]>::from(Sha256::digest(b"0")));
        assert_eq!(
            digest(b"x", 1234567890),
            <[u8; 32]>::from(Sha256::digest(b"x1234567890"))
        );
        assert_eq!(
            digest(b"x", u64::MAX),
            <[u8; 32]>::from(Sha256::digest(b"x18446744073709551615"))
        );
    }

    #[test]
    fn leading_zero_bits_count_from_the_first_byte() {
        assert_eq!(leading_zero_bits(&[0x80, 0]), 0);
        assert_eq!(leading_zero_bits(&[0x01, 0xff]), 7);
        assert_eq!(leading_zero_bits(&[0x00, 0x10]), 11);
        assert_eq!(leading_zero_bits(&[0, 0]), 16);
    }

    #[test]
    fn search_matches_a_brute_force_filter() {
        let prefix = b"browsergrid";
        let found = search(prefix, 8, 0, 5_000);
        let expected: Vec<u64> = (0..5_000)
            .filter(|&n| leading_zero_bits(&Sha256::digest(format!("browsergrid{n}"))) >= 8)
            .collect();
        assert_eq!(found, expected);
        // About 1 in 256 should qualify.
        assert!((5..=40).contains(&found.len()), "{}", found.len());
        assert!(found.iter().all(|&n| meets(prefix, n, 8)));
        assert!(search(prefix, 8, 10, 10).is_empty());
    }
}
