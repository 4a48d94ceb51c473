//! Fuel per task of a wasm job, in brief: how many tasks were counted, their
//! total, the smallest, the median and the largest, and a histogram of
//! equal-width bins. It is what the dashboard draws for a wasm job: a few
//! hundred bytes whatever the job's size, where the results export is one
//! line a task.
//!
//! The figures come from the stored outcomes of the tasks decided so far,
//! read once per request (like an export, on a blocking thread); the status
//! object keeps only the total. The median of an even count is the lower of
//! the two middle values, so it is always some task's fuel.

use serde::Serialize;

use super::*;

/// A histogram has at most this many bins.
pub const FUEL_BINS: u64 = 20;

/// `GET /api/jobs/{id}/fuel`. With no task decided yet, `tasks` is 0, the
/// figures are null and there are no bins.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FuelSummary {
    /// The tasks counted: those decided so far (all of a done job's).
    pub tasks: u64,
    pub total: u64,
    pub min: Option<u64>,
    pub median: Option<u64>,
    pub max: Option<u64>,
    /// Bin `i` counts the tasks whose fuel is in
    /// `[min + i * bin_width, min + (i + 1) * bin_width)`; the bins cover
    /// `min..=max` with at most [`FUEL_BINS`] of them.
    pub bin_width: u64,
    pub bins: Vec<u64>,
}

impl FuelSummary {
    /// The summary of every task's fuel, in any order.
    pub fn of(mut fuel: Vec<u64>) -> FuelSummary {
        fuel.sort_unstable();
        let (Some(&min), Some(&max)) = (fuel.first(), fuel.last()) else {
            return FuelSummary {
                tasks: 0,
                total: 0,
                min: None,
                median: None,
                max: None,
                bin_width: 0,
                bins: Vec::new(),
            };
        };
        // Widths in u128: `max - min + 1` overflows u64 only at the extremes.
        let span = u128::from(max - min) + 1;
        let width = span.div_ceil(u128::from(FUEL_BINS));
        let mut bins = vec![0; span.div_ceil(width) as usize];
        for &f in &fuel {
            bins[(u128::from(f - min) / width) as usize] += 1;
        }
        FuelSummary {
            tasks: fuel.len() as u64,
            total: fuel.iter().fold(0u64, |sum, &f| sum.saturating_add(f)),
            min: Some(min),
            median: Some(fuel[(fuel.len() - 1) / 2]),
            max: Some(max),
            bin_width: u64::try_from(width).unwrap_or(u64::MAX),
            bins,
        }
    }
}

impl Grid {
    /// The fuel its decided tasks used, for a wasm job in any state.
    pub async fn fuel(
        &self,
        caller: &crate::users::Caller,
        id: u64,
    ) -> Result<FuelSummary, ApiError> {
        let job = self.job_for(caller, id)?;
        if job.spec().kind() != grid_kernels::KernelKind::Wasm {
            return Err(ApiError::BadRequest(format!(
                "job {id} runs {}; only wasm tasks use fuel",
                job.spec().kind()
            )));
        }
        let store = self.store.clone();
        let fuel = tokio::task::spawn_blocking(move || -> Result<Vec<u64>, StoreError> {
            let mut fuel = Vec::new();
            store.for_each_result(id, |task, bytes| {
                match TaskOutput::decode(grid_kernels::KernelKind::Wasm, bytes) {
                    Ok(TaskOutput::Wasm(outcome)) => {
                        fuel.push(outcome.fuel_used);
                        Ok(())
                    }
                    _ => Err(StoreError::Corrupt(format!(
                        "job {id} task {task}: the stored output is not a wasm outcome"
                    ))),
                }
            })?;
            Ok(fuel)
        })
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))??;
        Ok(FuelSummary::of(fuel))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_and_bins_of_a_few_tasks() {
        let s = FuelSummary::of(vec![30, 10, 20, 40]);
        assert_eq!((s.tasks, s.total), (4, 100));
        assert_eq!((s.min, s.median, s.max), (Some(10), Some(20), Some(40)));
        // 31 values from 10 to 40 in bins of 2: the last bin holds 40 alone.
        assert_eq!(s.bin_width, 2);
        assert_eq!(s.bins.len(), 16);
        assert_eq!(s.bins.iter().sum::<u64>(), 4);
        assert_eq!((s.bins[0], s.bins[5], s.bins[10], s.bins[15]), (1, 1, 1, 1));
        assert_eq!(FuelSummary::of(vec![7, 1, 4]).median, Some(4));
    }

    #[test]
    fn one_value_and_none() {
        let s = FuelSummary::of(vec![5, 5, 5]);
        assert_eq!((s.min, s.median, s.max), (Some(5), Some(5), Some(5)));
        assert_eq!((s.bin_width, s.bins), (1, vec![3]));
        let none = FuelSummary::of(Vec::new());
        assert_eq!((none.tasks, none.min, none.bins.len()), (0, None, 0));
        assert_eq!(
            serde_json::to_string(&none).unwrap(),
            r#"{"tasks":0,"total":0,"min":null,"median":null,"max":null,"bin_width":0,"bins":[]}"#
        );
    }

    #[test]
    fn every_value_lands_in_a_bin_whatever_the_spread() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for round in 0..200 {
            let scale = [1, 10, 1_000_000, u64::MAX][round % 4];
            let fuel: Vec<u64> = (0..1 + next() % 500).map(|_| next() % scale).collect();
            let s = FuelSummary::of(fuel.clone());
            assert!(s.bins.len() as u64 <= FUEL_BINS && !s.bins.is_empty());
            assert_eq!(s.bins.iter().sum::<u64>(), fuel.len() as u64);
            let (min, max) = (s.min.unwrap(), s.max.unwrap());
            assert!(s.bins.len() as u128 * u128::from(s.bin_width) > u128::from(max - min));
            let mut sorted = fuel;
            sorted.sort_unstable();
            assert_eq!(s.median, Some(sorted[(sorted.len() - 1) / 2]));
        }
    }
}
