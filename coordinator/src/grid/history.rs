//! Job history that does not weigh: what the grid holds of finished jobs,
//! which is nothing in memory. A job leaves [`Grid::jobs`] once its
//! finishing change is stored ([`Grid::commit`]); from then on its status,
//! its results, its removal and who may see it are read from the store
//! when asked for, so start-up and memory at rest do not grow with history.
//!
//! - Pages of the job list ([`Grid::list_jobs_page`], `GET /api/jobs`):
//!   newest first, the jobs in memory merged with the finished jobs of the
//!   store, the memory's word taken for a job in both.
//! - Retention ([`Grid::spawn_job_retention`], `grid serve --keep-finished`):
//!   now and then, finished jobs older than the retention (by `finished_at`)
//!   are deleted in small groups in the store's writer, as `grid rm` would,
//!   and the file gives the freed pages back in small vacuum steps, so the
//!   results being written meanwhile wait at most one small step.

use std::time::Duration;

use tokio::sync::watch;

use super::*;
use crate::store::FinishedPage;
use crate::users::Caller;
use grid_protocol::api::JobQuery;

/// One page of the job list, newest first.
#[derive(Debug, Clone, PartialEq)]
pub struct JobPage {
    pub jobs: Vec<JobStatus>,
    /// The `before` of the next page, if more jobs match.
    pub next_before: Option<u64>,
}

/// Jobs the retention deletes in one write.
const DELETE_GROUP: u32 = 64;
/// Pages (4 KiB each) one vacuum step gives back.
const VACUUM_PAGES: u32 = 256;

/// How often the retention runs: a tenth of the retention, between a minute
/// and an hour.
fn retention_interval(keep: Duration) -> Duration {
    (keep / 10).clamp(Duration::from_secs(60), Duration::from_secs(3600))
}

/// What a retention pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retained {
    /// Finished jobs deleted.
    pub deleted: u64,
    /// Vacuum steps taken afterwards.
    pub vacuum_steps: u32,
}

impl Grid {
    /// A finished job from the store, as a `Job` of its own (no collator,
    /// no inputs): nobody else holds it, and it is dropped after use.
    pub(super) fn stored_job(&self, id: u64) -> Result<Option<Arc<Job>>, ApiError> {
        Ok(self.store.stored_job(id)?.map(job_from_store))
    }

    /// A page of the jobs `caller` may see (its own; an admin every user's),
    /// newest first: those of `query` below `query.before`, in its states,
    /// at most `query.limit`, and whether more remain.
    pub fn list_jobs_page(&self, caller: &Caller, query: &JobQuery) -> JobPage {
        let limit = query.limit as usize;
        // One more than asked tells whether more remain.
        let wanted = limit.saturating_add(1);
        let mut live: Vec<Arc<Job>> = self
            .jobs
            .iter()
            .filter(|j| caller.may_see(j.definition.owner) && query.admits(j.id, j.state()))
            .map(|j| j.clone())
            .collect();
        live.sort_unstable_by_key(|j| std::cmp::Reverse(j.id));
        live.truncate(wanted);
        let page = FinishedPage {
            owner: (!caller.admin).then_some(caller.user),
            before: query.before,
            states: query.states.clone(),
            limit: wanted,
        };
        let stored = self
            .store
            .finished_jobs(&page, |id| self.jobs.contains_key(&id))
            .unwrap_or_else(|error| {
                tracing::error!(%error, "cannot read finished jobs from the store");
                Vec::new()
            });
        let mut statuses: Vec<JobStatus> = live
            .iter()
            .map(|job| self.status_of(job))
            .chain(
                stored
                    .into_iter()
                    .map(|s| self.status_of(&job_from_store(s))),
            )
            .collect();
        statuses.sort_unstable_by_key(|s| std::cmp::Reverse(s.id));
        let next_before = (limit > 0 && statuses.len() > limit).then(|| statuses[limit - 1].id);
        statuses.truncate(limit);
        JobPage {
            jobs: statuses,
            next_before,
        }
    }

    /// How many of the jobs `caller` may see are in each state: those in
    /// memory, and the finished ones of the store (for `GET /metrics`, pass
    /// an admin: [`Grid::first_admin`]).
    pub fn job_counts(&self, caller: &Caller) -> HashMap<JobState, u64> {
        let mut counts: HashMap<JobState, u64> = HashMap::new();
        for job in self.jobs.iter() {
            let state = job.state();
            if !state.is_finished() && caller.may_see(job.definition.owner) {
                *counts.entry(state).or_default() += 1;
            }
        }
        match self
            .store
            .finished_counts((!caller.admin).then_some(caller.user))
        {
            Ok(finished) => counts.extend(finished),
            Err(error) => tracing::error!(%error, "cannot count finished jobs"),
        }
        counts
    }

    /// Deletes the finished jobs that finished before `cutoff` (Unix ms),
    /// a few at a time, then vacuums the store in small steps. Each step is
    /// one short write of its own: results keep flowing between them.
    pub async fn remove_finished_before(&self, cutoff: u64) -> Result<Retained, StoreError> {
        let mut retained = Retained::default();
        loop {
            let deleted = self
                .store
                .delete_finished(cutoff, unix_ms(), DELETE_GROUP)
                .await?;
            retained.deleted += u64::from(deleted);
            if deleted < DELETE_GROUP {
                break;
            }
            tokio::task::yield_now().await;
        }
        if retained.deleted == 0 {
            return Ok(retained);
        }
        loop {
            retained.vacuum_steps += 1;
            if self.store.vacuum_step(VACUUM_PAGES).await? == 0 {
                break;
            }
            tokio::task::yield_now().await;
        }
        tracing::info!(
            jobs = retained.deleted,
            vacuum_steps = retained.vacuum_steps,
            "finished jobs past the retention deleted"
        );
        self.audit(
            audit::COORDINATOR,
            AuditAction::JobRemoved,
            format!("{} finished jobs", retained.deleted),
            format!("finished before {cutoff} (Unix ms), past --keep-finished"),
        );
        Ok(retained)
    }

    /// With `--keep-finished`, deletes the finished jobs past it now and
    /// then (see [`retention_interval`]) until `stopping` turns true.
    pub fn spawn_job_retention(
        self: &Arc<Self>,
        mut stopping: watch::Receiver<bool>,
    ) -> Option<tokio::task::JoinHandle<()>> {
        let keep = self.config.keep_finished?;
        let grid = self.clone();
        Some(tokio::spawn(async move {
            let mut interval = tokio::time::interval(retention_interval(keep));
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let keep_ms = u64::try_from(keep.as_millis()).unwrap_or(u64::MAX);
            loop {
                tokio::select! {
                    _ = interval.tick() => {
                        let cutoff = unix_ms().saturating_sub(keep_ms);
                        if let Err(error) = grid.remove_finished_before(cutoff).await {
                            tracing::error!(%error, "the job retention failed");
                        }
                    }
                    _ = stopping.changed() => break,
                }
            }
        }))
    }
}

/// A stored job as the grid shows it.
pub(super) fn job_from_store(stored: crate::store::StoredJob) -> Arc<Job> {
    Arc::new(Job::new(
        stored.id,
        stored.definition,
        None,
        JobLive {
            lifecycle: stored.lifecycle,
            tasks_done: stored.tasks_done,
            collator: None,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grid::testing::{join, next_batch, open_grid, primes_job};

    /// The honest frame of a batch.
    fn answers(batch: &Batch) -> ResultsFrame {
        let mut runner = grid_kernels::TaskRunner::new();
        let mut builder = grid_protocol::frame::ResultsFrameBuilder::new(batch.batch);
        for task in batch.tasks.iter() {
            let output = runner.run(&batch.spec, batch.job_tasks, task).unwrap();
            builder.push_bytes(task, &output.to_bytes());
        }
        ResultsFrame::decode(&builder.finish()).unwrap()
    }

    /// Runs `caller`'s new job of `tasks` tasks to done on `worker`.
    async fn run_job(
        grid: &Grid,
        caller: &Caller,
        worker: &WorkerConn,
        queue: &mut mpsc::Receiver<Outbound>,
        tasks: u32,
    ) -> u64 {
        let job = grid.submit(caller, primes_job(tasks)).await.unwrap();
        while grid.job(job.id).is_some() {
            let batch = next_batch(queue).await;
            grid.on_results(worker, answers(&batch)).await.unwrap();
        }
        job.id
    }

    fn query(limit: u32, before: Option<u64>, states: &[JobState]) -> JobQuery {
        JobQuery {
            limit,
            before,
            states: states.to_vec(),
        }
    }

    fn ids(page: &JobPage) -> Vec<u64> {
        page.jobs.iter().map(|j| j.id).collect()
    }

    #[tokio::test]
    async fn a_finished_job_leaves_memory_and_is_served_from_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let grid = open_grid(dir.path()).await;
        let admin = grid.first_admin();
        let alice = crate::grid::testing::add_user(&grid, "alice").await;
        let (worker, mut queue) = join(&grid, 1);
        let done = run_job(&grid, &admin, &worker, &mut queue, 3).await;
        assert!(grid.job(done).is_none(), "a done job is not held in memory");
        assert!(grid.jobs.is_empty());
        let status = grid.job_status(&admin, done).unwrap();
        assert_eq!((status.state, status.tasks.done), (JobState::Done, 3));
        assert_eq!(
            status.result,
            Some(grid_kernels::ResultSummary::Primes { count: 168 })
        );
        let (_, result) = grid.results(&admin, done).await.unwrap();
        assert_eq!(result, grid_kernels::JobResult::Primes { count: 168 });
        // Another user's finished job is 404, exactly as a missing one.
        for id in [done, done + 100] {
            assert!(matches!(
                grid.job_status(&alice, id),
                Err(ApiError::NotFound(_))
            ));
        }
        assert!(matches!(
            grid.remove_job(&alice, done).await,
            Err(ApiError::NotFound(_))
        ));
        // A cancelled job keeps the count of tasks it had decided.
        let cancelled = grid.submit(&alice, primes_job(4)).await.unwrap().id;
        let batch = next_batch(&mut queue).await;
        let mut one = answers(&batch);
        one.results.truncate(1);
        grid.on_results(&worker, one).await.unwrap();
        grid.cancel(&alice, cancelled).await.unwrap();
        assert!(grid.job(cancelled).is_none());
        let status = grid.job_status(&alice, cancelled).unwrap();
        assert_eq!((status.state, status.tasks.done), (JobState::Cancelled, 1));
        assert!(matches!(
            grid.cancel(&alice, cancelled).await,
            Err(ApiError::Conflict(_))
        ));
        // A restart loads no finished job; they are all still there.
        drop((worker, queue));
        drop(grid);
        let grid = open_grid(dir.path()).await;
        assert!(grid.jobs.is_empty(), "finished jobs stay on disk");
        let all = grid.list_jobs_page(&admin, &JobQuery::default());
        assert_eq!(ids(&all), [cancelled, done]);
        let mine = grid.list_jobs_page(&alice, &JobQuery::default());
        assert_eq!(ids(&mine), [cancelled]);
        grid.remove_job(&alice, cancelled).await.unwrap();
        assert!(matches!(
            grid.job_status(&alice, cancelled),
            Err(ApiError::NotFound(_))
        ));
        assert_eq!(
            grid.job_counts(&admin).get(&JobState::Done).copied(),
            Some(1),
            "counted from the store"
        );
        assert_eq!(grid.job_counts(&alice).get(&JobState::Done), None);
        let queued = grid.submit(&alice, primes_job(1)).await.unwrap().id;
        let counts = grid.job_counts(&alice);
        assert_eq!(counts.get(&JobState::Queued).copied(), Some(1), "{queued}");
        assert_eq!(counts.values().sum::<u64>(), 1);
    }

    #[tokio::test]
    async fn pages_merge_live_and_finished_jobs_newest_first() {
        let dir = tempfile::tempdir().unwrap();
        let grid = open_grid(dir.path()).await;
        let admin = grid.first_admin();
        let (worker, mut queue) = join(&grid, 1);
        let mut done = Vec::new();
        for _ in 0..3 {
            done.push(run_job(&grid, &admin, &worker, &mut queue, 1).await);
        }
        // Two queued jobs, never sent: the worker is gone.
        grid.unregister_worker(worker.id);
        let queued: Vec<u64> = [
            grid.submit(&admin, primes_job(2)).await.unwrap().id,
            grid.submit(&admin, primes_job(2)).await.unwrap().id,
        ]
        .into();
        let cancelled = grid.submit(&admin, primes_job(2)).await.unwrap().id;
        grid.cancel(&admin, cancelled).await.unwrap();

        let first = grid.list_jobs_page(&admin, &query(2, None, &[]));
        assert_eq!(ids(&first), [cancelled, queued[1]]);
        assert_eq!(first.next_before, Some(queued[1]));
        let second = grid.list_jobs_page(&admin, &query(2, first.next_before, &[]));
        assert_eq!(ids(&second), [queued[0], done[2]]);
        let third = grid.list_jobs_page(&admin, &query(2, second.next_before, &[]));
        assert_eq!(ids(&third), [done[1], done[0]]);
        assert_eq!(third.next_before, None, "nothing left");

        let finished = grid.list_jobs_page(
            &admin,
            &query(10, None, &[JobState::Done, JobState::Cancelled]),
        );
        assert_eq!(ids(&finished), [cancelled, done[2], done[1], done[0]]);
        let live = grid.list_jobs_page(&admin, &query(10, None, &[JobState::Queued]));
        assert_eq!(ids(&live), [queued[1], queued[0]]);
        let below = grid.list_jobs_page(&admin, &query(10, Some(done[2]), &[JobState::Done]));
        assert_eq!(ids(&below), [done[1], done[0]]);
        let every: Vec<u64> = grid.list_jobs(&admin).iter().map(|j| j.id).collect();
        assert_eq!(
            every,
            [done[0], done[1], done[2], queued[0], queued[1], cancelled]
        );
    }

    #[tokio::test]
    async fn a_done_job_on_disk_is_rechecked_when_its_donor_is_caught() {
        let dir = tempfile::tempdir().unwrap();
        let grid = open_grid(dir.path()).await;
        let admin = grid.first_admin();
        let (liar, mut liar_queue) = join(&grid, 1);
        let job = run_job(&grid, &admin, &liar, &mut liar_queue, 2).await;
        assert!(grid.job(job).is_none());
        grid.unregister_worker(liar.id);
        grid.quarantine(liar.donor, "caught".into()).await;
        let status = grid.job_status(&admin, job).unwrap();
        assert_eq!(status.state, JobState::Rechecking, "made live again");
        assert!(grid.job(job).is_some());
        // An honest worker (another donor) computes the answers again.
        let (honest, mut queue) = join(&grid, 1);
        assert_ne!(honest.donor, liar.donor);
        grid.dispatch();
        while grid.job(job).is_some() {
            let batch = next_batch(&mut queue).await;
            grid.on_results(&honest, answers(&batch)).await.unwrap();
        }
        let status = grid.job_status(&admin, job).unwrap();
        assert_eq!((status.state, status.revised), (JobState::Done, 0));
    }

    #[tokio::test]
    async fn a_recheck_cut_short_by_a_crash_is_done_at_the_next_start() {
        let dir = tempfile::tempdir().unwrap();
        let grid = open_grid(dir.path()).await;
        let admin = grid.first_admin();
        let (liar, mut liar_queue) = join(&grid, 1);
        let job = run_job(&grid, &admin, &liar, &mut liar_queue, 2).await;
        grid.unregister_worker(liar.id);
        // The quarantine is stored, then the coordinator dies before it
        // looked at the done jobs.
        grid.store.remember_quarantine(liar.donor, "caught", 1);
        grid.store.flush().await.unwrap();
        assert_eq!(grid.store.pending_rechecks().unwrap(), [liar.donor]);
        drop((liar, liar_queue));
        drop(grid);

        let grid = open_grid(dir.path()).await;
        let (honest, mut queue) = join(&grid, 1);
        assert_ne!(honest.donor, 0);
        // The start looks at the liar's answers (in a task of its own).
        let status = loop {
            let status = grid.job_status(&admin, job).unwrap();
            if status.state != JobState::Done {
                break status;
            }
            tokio::task::yield_now().await;
        };
        assert_eq!(status.state, JobState::Rechecking);
        grid.dispatch();
        while grid.job(job).is_some() {
            let batch = next_batch(&mut queue).await;
            grid.on_results(&honest, answers(&batch)).await.unwrap();
        }
        assert_eq!(grid.job_status(&admin, job).unwrap().state, JobState::Done);
        // The recheck's task forgets it once it has looked at every job,
        // which may be a moment after the job is done.
        let mut looks = 0;
        while !grid.store.pending_rechecks().unwrap().is_empty() {
            looks += 1;
            assert!(looks < 10_000, "the recheck is never marked done");
            grid.store.flush().await.unwrap();
            tokio::task::yield_now().await;
        }
        drop((honest, queue));
        drop(grid);
        let grid = open_grid(dir.path()).await;
        tokio::task::yield_now().await;
        assert_eq!(grid.job_status(&admin, job).unwrap().state, JobState::Done);
    }

    #[tokio::test]
    async fn the_retention_deletes_jobs_finished_before_the_cutoff_only() {
        let dir = tempfile::tempdir().unwrap();
        let grid = open_grid(dir.path()).await;
        let admin = grid.first_admin();
        let (worker, mut queue) = join(&grid, 1);
        let old = run_job(&grid, &admin, &worker, &mut queue, 1).await;
        let old_at = grid.job_status(&admin, old).unwrap().finished_at.unwrap();
        let cutoff = old_at + 1;
        // Finished after the cutoff (time passed in: the cutoff is a number).
        let recent = loop {
            let id = run_job(&grid, &admin, &worker, &mut queue, 1).await;
            if grid.job_status(&admin, id).unwrap().finished_at.unwrap() >= cutoff {
                break id;
            }
        };
        grid.unregister_worker(worker.id);
        let queued = grid.submit(&admin, primes_job(1)).await.unwrap().id;
        let retained = grid.remove_finished_before(cutoff).await.unwrap();
        assert!(
            retained.deleted >= 1 && retained.vacuum_steps >= 1,
            "{retained:?}"
        );
        assert!(matches!(
            grid.job_status(&admin, old),
            Err(ApiError::NotFound(_))
        ));
        assert_eq!(
            grid.job_status(&admin, recent).unwrap().state,
            JobState::Done
        );
        assert_eq!(
            grid.job_status(&admin, queued).unwrap().state,
            JobState::Queued
        );
        assert_eq!(grid.store.result_count(old).unwrap(), 0);
        assert_eq!(
            grid.remove_finished_before(cutoff).await.unwrap(),
            Retained::default(),
            "nothing more to delete"
        );
    }

    #[test]
    fn the_retention_runs_a_few_times_a_retention_within_bounds() {
        let day = Duration::from_secs(24 * 3600);
        assert_eq!(retention_interval(30 * day), Duration::from_secs(3600));
        assert_eq!(
            retention_interval(Duration::from_secs(600)),
            Duration::from_secs(60)
        );
        assert_eq!(
            retention_interval(Duration::from_secs(6000)),
            Duration::from_secs(600)
        );
    }
}
