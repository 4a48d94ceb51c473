//! Digest-only replicas: for a job run at redundancy above 1, one replica
//! of each task sends its output in full and the others only its SHA-256
//! (`digest_only` in the batch, a digest-only entry in the results frame),
//! so a task's output crosses the network about once, not R times.
//!
//! [`ReplicaOutputs`] is one job's bookkeeping, without I/O:
//! - at grant, which batch is to send each task in full
//!   ([`ReplicaOutputs::assign`]): the first replica granted, or a later one
//!   when the batch that was to do it no longer awaits the task (its lease
//!   ended) or the coordinator asked again;
//! - the full outputs of undecided tasks, so that when a digest completes
//!   a quorum the coordinator has the bytes it agreed on;
//! - tasks decided by digests whose bytes the coordinator never got (the
//!   full replica disagreed, or a restart lost them): the task is opened
//!   again and its next replica sends in full ([`ReplicaOutputs::ask_full`]).
//!
//! A digest-only result is accepted only from a batch that was told to
//! send one, so a worker cannot keep a task's bytes from the coordinator.

use std::collections::{HashMap, HashSet};

use bytes::Bytes;

/// One job's replica outputs.
#[derive(Debug, Default)]
pub struct ReplicaOutputs {
    /// The batch that sends each undecided task in full.
    full_from: HashMap<u32, u64>,
    /// Full outputs of undecided tasks, with their digests.
    pending: HashMap<u32, ([u8; 32], Bytes)>,
    /// Tasks whose next replica must send in full.
    asked: HashSet<u32>,
}

impl ReplicaOutputs {
    /// Whether `batch`, being granted `task`, sends it as a digest: not if
    /// it is to send it in full. `awaits(b)` says whether batch `b` still
    /// awaits the task.
    pub fn assign(&mut self, task: u32, batch: u64, awaits: impl FnOnce(u64) -> bool) -> bool {
        if self.asked.remove(&task) {
            self.full_from.insert(task, batch);
            return false;
        }
        if self.pending.contains_key(&task) {
            return true;
        }
        match self.full_from.get(&task) {
            Some(&other) if other != batch && awaits(other) => true,
            _ => {
                self.full_from.insert(task, batch);
                false
            }
        }
    }

    /// Whether a digest-only result for `task` from `batch` was asked for.
    pub fn may_send_digest(&self, task: u32, batch: u64) -> bool {
        self.full_from.get(&task).is_some_and(|&full| full != batch)
    }

    /// A full output of a task that is not decided yet.
    pub fn keep(&mut self, task: u32, digest: [u8; 32], bytes: Bytes) {
        self.pending.entry(task).or_insert((digest, bytes));
    }

    /// The full output with `digest` of a task a digest just decided.
    pub fn bytes_for(&self, task: u32, digest: &[u8; 32]) -> Option<Bytes> {
        self.pending
            .get(&task)
            .filter(|(d, _)| d == digest)
            .map(|(_, bytes)| bytes.clone())
    }

    /// The task is decided: nothing of it is needed any more.
    pub fn decided(&mut self, task: u32) {
        self.full_from.remove(&task);
        self.pending.remove(&task);
        self.asked.remove(&task);
    }

    /// The task was decided without its bytes and is open again: its next
    /// replica sends in full.
    pub fn ask_full(&mut self, task: u32) {
        self.decided(task);
        self.asked.insert(task);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_replica_sends_in_full_and_the_others_digests() {
        let mut r = ReplicaOutputs::default();
        assert!(!r.assign(5, 10, |_| unreachable!()), "first: in full");
        assert!(r.assign(5, 11, |b| b == 10), "second: a digest");
        assert!(r.may_send_digest(5, 11));
        assert!(!r.may_send_digest(5, 10), "the full one may not");
        assert!(
            !r.may_send_digest(6, 11),
            "nor anyone for a task not assigned"
        );
        // The full replica's lease ended: the next one sends in full.
        assert!(!r.assign(5, 12, |b| b != 10));
        assert!(r.may_send_digest(5, 10) && !r.may_send_digest(5, 12));
    }

    #[test]
    fn bytes_are_kept_until_decided_and_asked_for_again_when_missing() {
        let mut r = ReplicaOutputs::default();
        assert!(!r.assign(1, 10, |_| true));
        r.keep(1, [1; 32], Bytes::from_static(b"out"));
        assert!(r.assign(1, 11, |_| false), "bytes in hand: digests suffice");
        assert_eq!(r.bytes_for(1, &[1; 32]), Some(Bytes::from_static(b"out")));
        assert_eq!(r.bytes_for(1, &[2; 32]), None, "another digest");
        r.decided(1);
        assert_eq!(r.bytes_for(1, &[1; 32]), None);
        // Decided by digests with no bytes: the next replica sends in full.
        assert!(!r.assign(2, 20, |_| true));
        assert!(r.assign(2, 21, |_| true));
        r.ask_full(2);
        assert!(!r.assign(2, 22, |_| true));
        assert!(r.assign(2, 23, |_| true));
        assert!(r.may_send_digest(2, 23) && !r.may_send_digest(2, 22));
    }
}
