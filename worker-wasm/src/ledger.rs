//! The donor page's blob cache as bookkeeping, without I/O: what the tab
//! holds ([`CacheIndex`]: quota, least recently used first out), which of
//! it was checked against its digest since the page loaded, when each blob
//! was last used (kept across page loads), which blobs the coordinator sent
//! wrong, and the figures the page shows. [`crate::blob_cache`] does the
//! I/O (the origin private file system, fetches, hashing) and asks this
//! ledger what to do; it is tested natively here.
//!
//! The rules, on top of [`CacheIndex`]'s:
//! - A blob found on disk at page load is held (and reported to the
//!   coordinator) but *unchecked*: before its first use in this page load
//!   it is read back and hashed ([`Lookup::Unchecked`]). A copy that fails
//!   is deleted and counted ([`Ledger::corrupt_on_disk`]), and the blob is
//!   fetched again.
//! - A fetched blob is admitted only after its bytes matched its digest.
//!   Bytes that do not match are counted ([`Ledger::corrupt_from_network`])
//!   and fetched once more; if the coordinator sends wrong bytes twice the
//!   blob is *refused* for [`REFUSAL_KEPT_MS`]: requests for it fail at once
//!   with the sentence, instead of fetching it again for every task.
//! - Restored from disk, blobs are taken in the order of their last use,
//!   oldest first ([`Ledger::restore`]), so eviction goes on where the last
//!   page load left it. The times are epoch milliseconds (`Date.now()`),
//!   persisted as JSON ([`Ledger::uses_json`]); a blob with no recorded use
//!   counts as the oldest.

use std::collections::{HashMap, HashSet};

use grid_kernels::ContentDigest;
use grid_protocol::cache::{AdmitError, CacheIndex};
use serde::Serialize;

/// How long a blob the coordinator sent wrong twice is refused.
pub const REFUSAL_KEPT_MS: f64 = 60_000.0;

/// Where a wanted blob is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// Held and checked in this page load: use it.
    Checked,
    /// Held, not yet checked in this page load: read it back and hash it.
    Unchecked,
    /// Not held: fetch it.
    Missing,
    /// The coordinator sent wrong bytes for it twice, a moment ago.
    Refused(String),
}

/// One hash of a blob's bytes, for the page to show.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Check {
    pub bytes: u64,
    pub ms: f64,
}

/// What the page's cache has done since the page loaded.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Stats {
    /// Blobs fetched from the coordinator, and their bytes (wrong ones too).
    pub fetches: u64,
    pub fetched_bytes: u64,
    /// Requests answered from the cache.
    pub hits: u64,
    /// Copies on disk that did not match their digest.
    pub corrupt_on_disk: u64,
    /// Fetches whose bytes did not match their digest.
    pub corrupt_from_network: u64,
    /// The last hash taken, and how long it took.
    pub last_check: Option<Check>,
}

/// One held blob, for the page's list.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HeldBlob {
    pub blob: ContentDigest,
    pub size: u64,
    /// Epoch milliseconds of its last use; `None` if never recorded.
    pub used_at: Option<f64>,
    /// Checked against its digest since the page loaded.
    pub checked: bool,
}

/// Everything the page shows of its cache, as JSON for `www/donor.js`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CacheView {
    /// Whether blobs outlive the page (the origin private file system).
    pub persistent: bool,
    /// Why not, as a sentence for the donor.
    pub why_not: Option<String>,
    pub quota: u64,
    pub bytes: u64,
    /// Used last first.
    pub blobs: Vec<HeldBlob>,
    #[serde(flatten)]
    pub stats: Stats,
}

/// The page's cache: the index and what this page load knows about it.
#[derive(Debug, Clone)]
pub struct Ledger {
    index: CacheIndex,
    used_at: HashMap<ContentDigest, f64>,
    checked: HashSet<ContentDigest>,
    refused: HashMap<ContentDigest, (String, f64)>,
    stats: Stats,
}

impl Ledger {
    /// A ledger holding the blobs `found` on disk, with the last uses
    /// recorded by earlier page loads; also answers the blobs to delete
    /// because they do not fit the quota (the ones used longest ago).
    pub fn restore(
        quota: u64,
        found: &[(ContentDigest, u64)],
        mut used_at: HashMap<ContentDigest, f64>,
    ) -> (Ledger, Vec<ContentDigest>) {
        let mut found = found.to_vec();
        found.sort_by(|(a, _), (b, _)| {
            let at = |d: &ContentDigest| used_at.get(d).copied().unwrap_or(f64::NEG_INFINITY);
            at(a).total_cmp(&at(b)).then(a.0.cmp(&b.0))
        });
        let mut index = CacheIndex::new(quota);
        let mut evicted = Vec::new();
        for (digest, size) in found {
            evicted.extend(index.restore(digest, size));
        }
        used_at.retain(|d, _| index.contains(d));
        let ledger = Ledger {
            index,
            used_at,
            checked: HashSet::new(),
            refused: HashMap::new(),
            stats: Stats::default(),
        };
        (ledger, evicted)
    }

    /// An empty ledger (a cache that keeps nothing across page loads).
    pub fn new(quota: u64) -> Ledger {
        Ledger::restore(quota, &[], HashMap::new()).0
    }

    /// Where `digest` is; `now` forgets old refusals.
    pub fn lookup(&mut self, digest: &ContentDigest, now: f64) -> Lookup {
        if let Some((reason, at)) = self.refused.get(digest) {
            if now - at < REFUSAL_KEPT_MS {
                return Lookup::Refused(reason.clone());
            }
            self.refused.remove(digest);
        }
        if !self.index.contains(digest) {
            Lookup::Missing
        } else if self.checked.contains(digest) {
            Lookup::Checked
        } else {
            Lookup::Unchecked
        }
    }

    /// A checked blob is used now.
    pub fn hit(&mut self, digest: &ContentDigest, now: f64) {
        if self.index.touch(digest) {
            self.used_at.insert(*digest, now);
            self.stats.hits += 1;
        }
    }

    /// A hash of `bytes` took `ms`.
    pub fn hashed(&mut self, bytes: u64, ms: f64) {
        self.stats.last_check = Some(Check { bytes, ms });
    }

    /// An unchecked copy on disk matched its digest: it is used now.
    pub fn checked_on_disk(&mut self, digest: &ContentDigest, now: f64) {
        if self.index.contains(digest) {
            self.checked.insert(*digest);
            self.hit(digest, now);
        }
    }

    /// The copy on disk did not match its digest (the caller deletes it).
    pub fn corrupt_on_disk(&mut self, digest: &ContentDigest) {
        self.stats.corrupt_on_disk += 1;
        self.forget(digest);
    }

    /// The copy on disk is gone (another tab of this origin evicted it).
    pub fn forget(&mut self, digest: &ContentDigest) {
        self.index.remove(digest);
        self.checked.remove(digest);
        self.used_at.remove(digest);
    }

    /// A fetch brought `bytes` bytes (right or wrong).
    pub fn fetched(&mut self, bytes: u64) {
        self.stats.fetches += 1;
        self.stats.fetched_bytes += bytes;
    }

    /// A fetch brought bytes that do not match their digest.
    pub fn corrupt_from_network(&mut self) {
        self.stats.corrupt_from_network += 1;
    }

    /// The coordinator sent wrong bytes for `digest` twice: refuse it for a
    /// while, with `reason`.
    pub fn refuse(&mut self, digest: ContentDigest, reason: String, now: f64) {
        self.refused.insert(digest, (reason, now));
    }

    /// A fetched blob matched its digest and was stored: it is held, checked
    /// and used now. Answers the blobs to delete to make room; an error if
    /// it is larger than the quota (then it is not held, and the caller
    /// deletes what it stored).
    pub fn admit(
        &mut self,
        digest: ContentDigest,
        size: u64,
        now: f64,
    ) -> Result<Vec<ContentDigest>, AdmitError> {
        let evicted = self.index.admit(digest, size)?;
        self.drop_all(&evicted);
        self.checked.insert(digest);
        self.used_at.insert(digest, now);
        Ok(evicted)
    }

    /// A new quota; answers what must go to fit it.
    pub fn set_quota(&mut self, quota: u64) -> Vec<ContentDigest> {
        let evicted = self.index.set_quota(quota);
        self.drop_all(&evicted);
        evicted
    }

    /// Forgets everything (the donor cleared the cache); answers what was
    /// held. The figures stay.
    pub fn clear(&mut self) -> Vec<ContentDigest> {
        let held = self.index.clear();
        self.drop_all(&held);
        self.refused.clear();
        held
    }

    fn drop_all(&mut self, gone: &[ContentDigest]) {
        for digest in gone {
            self.checked.remove(digest);
            self.used_at.remove(digest);
        }
    }

    pub fn quota(&self) -> u64 {
        self.index.quota()
    }

    pub fn contains(&self, digest: &ContentDigest) -> bool {
        self.index.contains(digest)
    }

    /// What the tab holds, used last first: what its workers report.
    pub fn holdings(&self) -> Vec<ContentDigest> {
        self.index.holdings().into_iter().map(|(d, _)| d).collect()
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// What the page shows.
    pub fn view(&self, persistent: bool, why_not: Option<String>) -> CacheView {
        CacheView {
            persistent,
            why_not,
            quota: self.index.quota(),
            bytes: self.index.bytes(),
            blobs: self
                .index
                .holdings()
                .into_iter()
                .map(|(blob, size)| HeldBlob {
                    blob,
                    size,
                    used_at: self.used_at.get(&blob).copied(),
                    checked: self.checked.contains(&blob),
                })
                .collect(),
            stats: self.stats.clone(),
        }
    }

    /// The last uses, as JSON to persist: `{"<hex>": epoch ms, ...}`.
    pub fn uses_json(&self) -> String {
        let uses: HashMap<String, f64> = self.used_at.iter().map(|(d, &t)| (d.hex(), t)).collect();
        serde_json::to_string(&uses).expect("plain data")
    }
}

/// Reads what [`Ledger::uses_json`] wrote; anything unreadable is no use
/// recorded (the order falls back to the digest).
pub fn parse_uses(json: &str) -> HashMap<ContentDigest, f64> {
    let Ok(uses) = serde_json::from_str::<HashMap<String, f64>>(json) else {
        return HashMap::new();
    };
    uses.into_iter()
        .filter_map(|(hex, at)| Some((ContentDigest::from_hex(&hex)?, at)))
        .filter(|(_, at)| at.is_finite())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(n: u8) -> ContentDigest {
        ContentDigest::of(&[n])
    }

    #[test]
    fn a_restored_cache_is_held_but_checked_before_use() {
        let uses = HashMap::from([(d(1), 300.0), (d(2), 100.0), (d(9), 5.0)]);
        let (mut ledger, evicted) =
            Ledger::restore(100, &[(d(1), 40), (d(2), 40), (d(3), 40)], uses);
        // 3 has no recorded use: the oldest, so it goes first; then 2.
        assert_eq!(evicted, vec![d(3)]);
        assert_eq!(ledger.holdings(), vec![d(1), d(2)], "used last first");
        assert_eq!(ledger.lookup(&d(2), 0.0), Lookup::Unchecked);
        assert_eq!(ledger.lookup(&d(3), 0.0), Lookup::Missing);
        ledger.checked_on_disk(&d(2), 1000.0);
        assert_eq!(ledger.lookup(&d(2), 0.0), Lookup::Checked);
        assert_eq!(ledger.holdings(), vec![d(2), d(1)]);
        assert_eq!(ledger.stats().hits, 1);
        let uses = parse_uses(&ledger.uses_json());
        assert_eq!(uses, HashMap::from([(d(1), 300.0), (d(2), 1000.0)]));
    }

    #[test]
    fn a_corrupt_copy_is_forgotten_and_counted() {
        let (mut ledger, _) = Ledger::restore(100, &[(d(1), 10)], HashMap::new());
        ledger.corrupt_on_disk(&d(1));
        assert_eq!(ledger.lookup(&d(1), 0.0), Lookup::Missing);
        assert!(ledger.holdings().is_empty());
        ledger.fetched(10);
        assert_eq!(ledger.admit(d(1), 10, 5.0), Ok(vec![]));
        assert_eq!(
            ledger.lookup(&d(1), 0.0),
            Lookup::Checked,
            "fetched bytes were checked"
        );
        let stats = ledger.stats();
        assert_eq!(
            (stats.corrupt_on_disk, stats.fetches, stats.fetched_bytes),
            (1, 1, 10)
        );
    }

    #[test]
    fn admitting_evicts_the_least_recently_used_and_forgets_their_checks() {
        let mut ledger = Ledger::new(100);
        assert_eq!(ledger.admit(d(1), 60, 1.0), Ok(vec![]));
        assert_eq!(ledger.admit(d(2), 30, 2.0), Ok(vec![]));
        ledger.hit(&d(1), 3.0);
        assert_eq!(ledger.admit(d(3), 30, 4.0), Ok(vec![d(2)]));
        assert_eq!(ledger.lookup(&d(2), 0.0), Lookup::Missing);
        assert!(
            ledger.admit(d(4), 101, 5.0).is_err(),
            "larger than the quota"
        );
        assert_eq!(ledger.set_quota(40), vec![d(1)]);
        assert_eq!(ledger.holdings(), vec![d(3)]);
        let view = ledger.view(false, Some("not a secure context".into()));
        assert_eq!(
            view.blobs,
            vec![HeldBlob {
                blob: d(3),
                size: 30,
                used_at: Some(4.0),
                checked: true
            }]
        );
        assert_eq!((view.quota, view.bytes), (40, 30));
        assert_eq!(ledger.clear(), vec![d(3)]);
        assert!(ledger.holdings().is_empty());
        assert_eq!(parse_uses(&ledger.uses_json()), HashMap::new());
    }

    #[test]
    fn a_blob_the_coordinator_sent_wrong_is_refused_for_a_while() {
        let mut ledger = Ledger::new(100);
        ledger.refuse(d(1), "wrong twice".into(), 1000.0);
        assert_eq!(
            ledger.lookup(&d(1), 1000.0 + REFUSAL_KEPT_MS - 1.0),
            Lookup::Refused("wrong twice".into())
        );
        assert_eq!(
            ledger.lookup(&d(1), 1000.0 + REFUSAL_KEPT_MS),
            Lookup::Missing
        );
        assert_eq!(ledger.lookup(&d(1), 1000.0), Lookup::Missing, "forgotten");
    }

    #[test]
    fn the_view_is_the_json_the_page_reads() {
        let mut ledger = Ledger::new(1000);
        ledger.admit(d(7), 12, 99.0).unwrap();
        ledger.hashed(12, 0.5);
        let json = serde_json::to_value(ledger.view(true, None)).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "persistent": true, "why_not": null, "quota": 1000, "bytes": 12,
                "blobs": [{"blob": d(7).to_string(), "size": 12, "used_at": 99.0, "checked": true}],
                "fetches": 0, "fetched_bytes": 0, "hits": 0,
                "corrupt_on_disk": 0, "corrupt_from_network": 0,
                "last_check": {"bytes": 12, "ms": 0.5}
            })
        );
    }

    #[test]
    fn unreadable_uses_are_no_uses() {
        assert!(parse_uses("not json").is_empty());
        assert!(parse_uses(r#"{"zz": 1}"#).is_empty());
        let hex = d(1).hex();
        assert_eq!(
            parse_uses(&format!(r#"{{"{hex}": 5, "x": 1}}"#)),
            HashMap::from([(d(1), 5.0)])
        );
    }
}
