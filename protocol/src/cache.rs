//! A worker's blob cache as bookkeeping, without I/O: which blobs it holds,
//! how many bytes, which were used last, what must go to make room under
//! the donor's quota, and what to report to the coordinator. The native
//! worker keeps the bytes in a directory, the browser in the origin private
//! file system; both drive one [`CacheIndex`] and do what it answers.
//!
//! The rules:
//! - A blob is admitted only after its bytes were checked against its
//!   digest; the index never sees unchecked bytes.
//! - A blob larger than the quota is never admitted (the task reads it from
//!   memory and the cache stays as it was).
//! - To make room, the blobs used longest ago go first (LRU). Use is a
//!   counter, not a clock, so the order is exact whatever the time source;
//!   a driver restoring from disk passes the order it found (file times).
//! - What the worker holds, for `hello` and `holding`, is its blobs used
//!   last first ([`CacheIndex::holdings`]); the session keeps the first
//!   [`crate::messages::MAX_HOLDINGS`].

use std::collections::HashMap;

use grid_kernels::ContentDigest;

/// The cache's quota when the donor sets none: 1 GiB.
pub const DEFAULT_QUOTA_BYTES: u64 = 1 << 30;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    size: u64,
    /// The value of the use counter when it was last used.
    used: u64,
}

/// What a cache holds and in which order it was used.
#[derive(Debug, Clone)]
pub struct CacheIndex {
    quota: u64,
    bytes: u64,
    uses: u64,
    entries: HashMap<ContentDigest, Entry>,
}

/// Why a blob was not admitted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdmitError {
    #[error("the blob is {size} bytes, more than the cache's quota of {quota}")]
    LargerThanQuota { size: u64, quota: u64 },
}

impl CacheIndex {
    pub fn new(quota: u64) -> CacheIndex {
        CacheIndex {
            quota,
            bytes: 0,
            uses: 0,
            entries: HashMap::new(),
        }
    }

    pub fn quota(&self) -> u64 {
        self.quota
    }

    /// Bytes held.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn contains(&self, digest: &ContentDigest) -> bool {
        self.entries.contains_key(digest)
    }

    /// The size of a held blob.
    pub fn size(&self, digest: &ContentDigest) -> Option<u64> {
        self.entries.get(digest).map(|e| e.size)
    }

    /// A blob found on disk at start, in the order found (oldest use
    /// first). Past the quota, what must go is returned, as by `admit`.
    pub fn restore(&mut self, digest: ContentDigest, size: u64) -> Vec<ContentDigest> {
        self.admit(digest, size).unwrap_or_else(|_| vec![digest])
    }

    /// Marks a held blob used now; false if it is not held (a miss).
    pub fn touch(&mut self, digest: &ContentDigest) -> bool {
        self.uses += 1;
        match self.entries.get_mut(digest) {
            Some(entry) => {
                entry.used = self.uses;
                true
            }
            None => false,
        }
    }

    /// Admits a checked blob, used now, and answers the blobs to delete to
    /// stay within the quota (used longest ago first; never the new one).
    /// Admitting a held blob only marks it used.
    pub fn admit(
        &mut self,
        digest: ContentDigest,
        size: u64,
    ) -> Result<Vec<ContentDigest>, AdmitError> {
        if self.touch(&digest) {
            return Ok(Vec::new());
        }
        if size > self.quota {
            return Err(AdmitError::LargerThanQuota {
                size,
                quota: self.quota,
            });
        }
        let mut evicted = Vec::new();
        if self.bytes + size > self.quota {
            let mut by_age: Vec<(u64, ContentDigest, u64)> = self
                .entries
                .iter()
                .map(|(d, e)| (e.used, *d, e.size))
                .collect();
            by_age.sort_unstable_by_key(|&(used, d, _)| (used, d.0));
            for (_, victim, victim_size) in by_age {
                if self.bytes + size <= self.quota {
                    break;
                }
                self.entries.remove(&victim);
                self.bytes -= victim_size;
                evicted.push(victim);
            }
        }
        self.entries.insert(
            digest,
            Entry {
                size,
                used: self.uses,
            },
        );
        self.bytes += size;
        Ok(evicted)
    }

    /// Forgets a blob (deleted, or found corrupt).
    pub fn remove(&mut self, digest: &ContentDigest) -> bool {
        match self.entries.remove(digest) {
            Some(entry) => {
                self.bytes -= entry.size;
                true
            }
            None => false,
        }
    }

    /// Sets a new quota and answers what must go to fit it.
    pub fn set_quota(&mut self, quota: u64) -> Vec<ContentDigest> {
        self.quota = quota;
        let mut evicted = Vec::new();
        while self.bytes > self.quota {
            let Some((&oldest, _)) = self.entries.iter().min_by_key(|(d, e)| (e.used, d.0)) else {
                break;
            };
            self.remove(&oldest);
            evicted.push(oldest);
        }
        evicted
    }

    /// Forgets everything (the donor cleared the cache); answers what was held.
    pub fn clear(&mut self) -> Vec<ContentDigest> {
        self.bytes = 0;
        self.entries.drain().map(|(d, _)| d).collect()
    }

    /// The blobs held, used last first, with their sizes.
    pub fn holdings(&self) -> Vec<(ContentDigest, u64)> {
        let mut held: Vec<(u64, ContentDigest, u64)> = self
            .entries
            .iter()
            .map(|(d, e)| (e.used, *d, e.size))
            .collect();
        held.sort_unstable_by_key(|&(used, d, _)| (std::cmp::Reverse(used), d.0));
        held.into_iter().map(|(_, d, size)| (d, size)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn d(n: u8) -> ContentDigest {
        ContentDigest::of(&[n])
    }

    #[test]
    fn the_blobs_used_longest_ago_make_room() {
        let mut cache = CacheIndex::new(100);
        assert_eq!(cache.admit(d(1), 40), Ok(vec![]));
        assert_eq!(cache.admit(d(2), 40), Ok(vec![]));
        assert!(cache.touch(&d(1)), "1 is now the one used last");
        assert_eq!(cache.admit(d(3), 40), Ok(vec![d(2)]));
        assert_eq!(cache.bytes(), 80);
        assert_eq!(
            cache.holdings(),
            vec![(d(3), 40), (d(1), 40)],
            "used last first"
        );
        assert_eq!(cache.admit(d(4), 100), Ok(vec![d(1), d(3)]));
        assert_eq!(
            cache.admit(d(5), 101),
            Err(AdmitError::LargerThanQuota {
                size: 101,
                quota: 100
            })
        );
        assert_eq!(
            cache.holdings(),
            vec![(d(4), 100)],
            "a refusal changes nothing"
        );
        assert!(!cache.touch(&d(1)));
        assert_eq!(
            cache.admit(d(4), 100),
            Ok(vec![]),
            "admitting again is a touch"
        );
    }

    #[test]
    fn quota_changes_restores_and_clears() {
        let mut cache = CacheIndex::new(DEFAULT_QUOTA_BYTES);
        for n in 0..4 {
            assert!(cache.restore(d(n), 10).is_empty());
        }
        assert_eq!(cache.set_quota(25), vec![d(0), d(1)]);
        assert_eq!(
            cache.restore(d(9), 30),
            vec![d(9)],
            "over the quota: delete it"
        );
        assert!(cache.remove(&d(2)));
        assert!(!cache.remove(&d(2)));
        assert_eq!(cache.bytes(), 10);
        assert_eq!(cache.clear(), vec![d(3)]);
        assert!(cache.is_empty() && cache.bytes() == 0);
    }

    proptest! {
        /// Against a model: bytes held never pass the quota, equal the sum
        /// of the entries, and eviction always takes the least recently used.
        #[test]
        fn the_index_agrees_with_a_list_model(ops in prop::collection::vec((0u8..3, 0u8..12, 1u64..60), 1..200)) {
            let quota = 100;
            let mut cache = CacheIndex::new(quota);
            // Most recently used last.
            let mut model: Vec<(u8, u64)> = Vec::new();
            for (op, n, size) in ops {
                match op {
                    0 => {
                        let held = model.iter().position(|&(m, _)| m == n);
                        let answer = cache.admit(d(n), size);
                        if let Some(i) = held {
                            let entry = model.remove(i);
                            model.push(entry);
                            prop_assert_eq!(answer, Ok(vec![]));
                        } else {
                            let mut expected = Vec::new();
                            let mut bytes: u64 = model.iter().map(|e| e.1).sum();
                            while bytes + size > quota {
                                let (victim, victim_size) = model.remove(0);
                                bytes -= victim_size;
                                expected.push(d(victim));
                            }
                            model.push((n, size));
                            prop_assert_eq!(answer, Ok(expected));
                        }
                    }
                    1 => {
                        let held = model.iter().position(|&(m, _)| m == n);
                        prop_assert_eq!(cache.touch(&d(n)), held.is_some());
                        if let Some(i) = held {
                            let entry = model.remove(i);
                            model.push(entry);
                        }
                    }
                    _ => {
                        let held = model.iter().position(|&(m, _)| m == n);
                        prop_assert_eq!(cache.remove(&d(n)), held.is_some());
                        if let Some(i) = held {
                            model.remove(i);
                        }
                    }
                }
                prop_assert!(cache.bytes() <= quota);
                prop_assert_eq!(cache.bytes(), model.iter().map(|e| e.1).sum::<u64>());
                let expected: Vec<(ContentDigest, u64)> =
                    model.iter().rev().map(|&(n, s)| (d(n), s)).collect();
                prop_assert_eq!(cache.holdings(), expected);
            }
        }
    }
}
