//! Measured speed: an exponentially weighted mean of milliseconds per task,
//! quick to follow a worker that speeds up or slows down, slow to be fooled by
//! one odd batch; and the time a worker spent on each job's batches
//! ([`JobClocks`]), which the means are taken over.

use crate::JobId;

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

/// A worker's time, divided between the jobs it holds batches of as
/// `grid_protocol::WorkerCore` divides its threads: evenly while they are
/// held together, each job's batches one after another. A batch's service
/// time is then the time its job was given from the grant, or from the
/// job's previous batch here finishing if later, to its end. With one job
/// at a time (the usual case) that is wall time since the later of the two;
/// with a newcomer's batch beside another job's, each counts the half it
/// had, rather than both the whole (which would make both look twice as
/// slow, and charge their users twice their share).
#[derive(Debug, Default)]
pub(crate) struct JobClocks {
    /// Per job held: batches held, time given (ms), and that reading when
    /// its last batch here finished.
    jobs: Vec<(JobId, u32, f64, f64)>,
    /// When the readings were last brought up to date.
    at: u64,
}

impl JobClocks {
    pub(crate) fn new(now: u64) -> JobClocks {
        JobClocks {
            jobs: Vec::new(),
            at: now,
        }
    }

    fn advance(&mut self, now: u64) {
        let dt = now.saturating_sub(self.at) as f64;
        self.at = self.at.max(now);
        let share = dt / self.jobs.len().max(1) as f64;
        for job in &mut self.jobs {
            job.2 += share;
        }
    }

    /// A batch of `job` was granted at `now`: the reading it starts from.
    pub(crate) fn granted(&mut self, job: JobId, now: u64) -> f64 {
        self.advance(now);
        match self.jobs.iter_mut().find(|j| j.0 == job) {
            Some(held) => {
                held.1 += 1;
                held.2
            }
            None => {
                self.jobs.push((job, 1, 0.0, 0.0));
                0.0
            }
        }
    }

    /// A batch of `job` that started from reading `started` finished at
    /// `now`: the time it was given, ms.
    pub(crate) fn finished(&mut self, job: JobId, started: f64, now: u64) -> f64 {
        self.advance(now);
        let Some(i) = self.jobs.iter().position(|j| j.0 == job) else {
            return 0.0;
        };
        let held = &mut self.jobs[i];
        let elapsed = held.2 - started.max(held.3);
        held.3 = held.2;
        held.1 -= 1;
        if held.1 == 0 {
            self.jobs.swap_remove(i);
        }
        elapsed
    }

    /// A batch of `job` ended unfinished (revoked, returned).
    pub(crate) fn dropped(&mut self, job: JobId) {
        if let Some(i) = self.jobs.iter().position(|j| j.0 == job) {
            self.jobs[i].1 -= 1;
            if self.jobs[i].1 == 0 {
                self.jobs.swap_remove(i);
            }
        }
    }
}
