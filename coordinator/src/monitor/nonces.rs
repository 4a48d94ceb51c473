//! A hashsearch job's nonces on the monitor channel ([`JobNonces`]): taken
//! out of the job's status (whose lists go empty), sent as the smallest few
//! in a snapshot, and as what changed between two events. Pure.

use grid_kernels::ResultSummary;
use grid_protocol::api::{JobNonces, JobStatus};

/// Empties a hashsearch status's nonce lists (`result` and `partial`) and
/// returns its nonces: the result's once there is one, else the partial
/// result's. None for any other kernel.
pub fn take_nonces(status: &mut JobStatus) -> Option<Vec<u64>> {
    let take = |summary: &mut Option<ResultSummary>| match summary {
        Some(ResultSummary::Hashsearch { nonces }) => Some(std::mem::take(nonces)),
        _ => None,
    };
    let result = take(&mut status.result);
    let partial = take(&mut status.partial);
    if !matches!(status.spec, grid_kernels::KernelSpec::Hashsearch(_)) {
        return None;
    }
    Some(result.or(partial).unwrap_or_default())
}

/// The smallest nonces of `nonces` (ascending) and their count.
pub fn first(job: u64, nonces: &[u64]) -> JobNonces {
    JobNonces {
        job,
        count: nonces.len() as u64,
        first: Some(nonces[..nonces.len().min(JobNonces::FIRST)].to_vec()),
        added: Vec::new(),
        removed: Vec::new(),
    }
}

/// What changed from `before` to `after` (both ascending); None if nothing.
pub fn change(job: u64, before: &[u64], after: &[u64]) -> Option<JobNonces> {
    let (mut added, mut removed) = (Vec::new(), Vec::new());
    let (mut i, mut j) = (0, 0);
    while i < before.len() || j < after.len() {
        match (before.get(i), after.get(j)) {
            (Some(b), Some(a)) if b == a => {
                i += 1;
                j += 1;
            }
            (Some(b), Some(a)) if b < a => {
                removed.push(*b);
                i += 1;
            }
            (Some(_), Some(a)) => {
                added.push(*a);
                j += 1;
            }
            (Some(b), None) => {
                removed.push(*b);
                i += 1;
            }
            (None, Some(a)) => {
                added.push(*a);
                j += 1;
            }
            (None, None) => unreachable!("the loop's condition"),
        }
    }
    if added.is_empty() && removed.is_empty() {
        return None;
    }
    Some(JobNonces {
        job,
        count: after.len() as u64,
        first: None,
        added,
        removed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_names_only_what_was_added_and_removed() {
        let before: Vec<u64> = (0..10_000).map(|n| n * 10).collect();
        let mut after = before.clone();
        after.insert(5, 45);
        after.push(1_000_000);
        after.retain(|&n| n != 500);
        let change = change(7, &before, &after).unwrap();
        assert_eq!(change.added, [45, 1_000_000]);
        assert_eq!(change.removed, [500]);
        assert_eq!((change.job, change.count, change.first), (7, 10_001, None));
        assert_eq!(super::change(7, &after, &after), None);
    }

    #[test]
    fn first_keeps_the_smallest_few() {
        let nonces: Vec<u64> = (0..1000).collect();
        let window = first(3, &nonces);
        assert_eq!(window.count, 1000);
        assert_eq!(
            window.first.unwrap(),
            (0..JobNonces::FIRST as u64).collect::<Vec<_>>()
        );
        assert_eq!(first(3, &[]).first, Some(vec![]));
    }
}
