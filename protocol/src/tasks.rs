//! Sets of task indices as sorted, disjoint, half-open ranges: `[[0, 500],
//! [700, 701]]` is tasks 0 to 499 and task 700. A batch of a hundred thousand
//! consecutive tasks costs a few bytes on the wire.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TaskRanges(Vec<(u32, u32)>);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("task ranges must be non-empty, ascending and disjoint half-open [start, end) pairs")]
pub struct BadRanges;

impl TaskRanges {
    pub fn new() -> TaskRanges {
        TaskRanges(Vec::new())
    }

    /// Ranges from already-checked pairs; fails unless each range is
    /// non-empty and they ascend without touching.
    pub fn from_ranges(ranges: Vec<(u32, u32)>) -> Result<TaskRanges, BadRanges> {
        let set = TaskRanges(ranges);
        set.validate()?;
        Ok(set)
    }

    /// Checks the invariant; used on ranges decoded from a peer.
    pub fn validate(&self) -> Result<(), BadRanges> {
        let mut previous_end = None;
        for &(start, end) in &self.0 {
            if start >= end || previous_end.is_some_and(|p| start <= p) {
                return Err(BadRanges);
            }
            previous_end = Some(end);
        }
        Ok(())
    }

    /// Adds one index, which must be larger than every index already in the set.
    pub fn push(&mut self, index: u32) {
        match self.0.last_mut() {
            Some((_, end)) if *end == index => *end += 1,
            Some((_, end)) => {
                assert!(index > *end, "indices must be pushed in ascending order");
                self.0.push((index, index + 1));
            }
            None => self.0.push((index, index + 1)),
        }
    }

    /// Builds the set from indices in any order (duplicates collapse).
    pub fn from_indices(indices: impl IntoIterator<Item = u32>) -> TaskRanges {
        let mut sorted: Vec<u32> = indices.into_iter().collect();
        sorted.sort_unstable();
        sorted.dedup();
        let mut set = TaskRanges::new();
        sorted.into_iter().for_each(|i| set.push(i));
        set
    }

    pub fn ranges(&self) -> &[(u32, u32)] {
        &self.0
    }

    /// How many tasks the set holds.
    pub fn len(&self) -> u64 {
        self.0.iter().map(|&(s, e)| u64::from(e - s)).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn contains(&self, index: u32) -> bool {
        let at = self.0.partition_point(|&(_, end)| end <= index);
        self.0.get(at).is_some_and(|&(start, _)| start <= index)
    }

    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.0.iter().flat_map(|&(s, e)| s..e)
    }

    /// The largest index plus one, or zero for the empty set.
    pub fn end(&self) -> u32 {
        self.0.last().map_or(0, |&(_, e)| e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn wire_form_is_a_list_of_pairs() {
        let set = TaskRanges::from_indices([700, 0, 1, 2]);
        assert_eq!(serde_json::to_string(&set).unwrap(), "[[0,3],[700,701]]");
        let back: TaskRanges = serde_json::from_str("[[0,3],[700,701]]").unwrap();
        assert_eq!(back, set);
        assert_eq!(set.len(), 4);
    }

    #[test]
    fn malformed_ranges_are_refused() {
        for bad in [
            vec![(3, 3)],
            vec![(5, 2)],
            vec![(0, 4), (4, 6)],
            vec![(5, 9), (0, 2)],
        ] {
            assert_eq!(
                TaskRanges::from_ranges(bad.clone()),
                Err(BadRanges),
                "{bad:?}"
            );
        }
        TaskRanges::from_ranges(vec![(0, 4), (5, 6)]).unwrap();
    }

    proptest! {
        #[test]
        fn a_set_holds_exactly_its_indices(indices in proptest::collection::vec(0u32..200, 0..60)) {
            let set = TaskRanges::from_indices(indices.clone());
            prop_assert!(set.validate().is_ok());
            let mut expected = indices.clone();
            expected.sort_unstable();
            expected.dedup();
            prop_assert_eq!(set.iter().collect::<Vec<_>>(), expected.clone());
            for i in 0..200 {
                prop_assert_eq!(set.contains(i), expected.binary_search(&i).is_ok());
            }
        }
    }
}
