//! Measured speed: an exponentially weighted mean of milliseconds per task,
//! quick to follow a worker that speeds up or slows down, slow to be fooled by
//! one odd batch.

#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Speed {
    ms_per_task: Option<f64>,
}

impl Speed {
    const WEIGHT: f64 = 0.5;

    pub(crate) fn observe(&mut self, ms_per_task: f64) {
        self.ms_per_task = Some(match self.ms_per_task {
            Some(old) => old + Self::WEIGHT * (ms_per_task - old),
            None => ms_per_task,
        });
    }

    pub(crate) fn ms_per_task(&self) -> f64 {
        self.ms_per_task.unwrap_or(f64::INFINITY)
    }

    pub(crate) fn known(&self) -> Option<f64> {
        self.ms_per_task
    }
}
