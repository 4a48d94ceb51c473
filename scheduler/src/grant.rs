//! Who gets which tasks. A worker with room in its pipeline gets a batch of
//! the first job in a grant's order that has tasks for it: the user furthest
//! behind its fair share first (`users`), then that user's jobs by priority
//! and age, with locality ranking jobs within a user (`jobs_in_order` has the
//! whole order). A worker whose pipeline is full gets one extra batch for a
//! newcomer, a user with no batch on it that is at its fair share
//! (`newcomers_only` says why), so a job that arrives while others fill the
//! workers starts within about one task's time rather than after the
//! batches queued ahead of it. The batch is sized from the worker's measured speed to take
//! about `target_batch_ms`, shrinking near the end of a job; the lease
//! records the batch and its deadline, and its owner is charged for it. When
//! nothing is left to issue, an idle worker gets speculative copies of tasks
//! others have held too long. A trusted donor's tasks are spot-checked by a
//! keyed hash the donor cannot predict.

use std::cmp::Reverse;
use std::iter;

use grid_protocol::TaskRanges;

use crate::job::Holder;
use crate::state::BatchState;
use crate::{Capabilities, DonorId, Grant, JobId, Scheduler, UserId, WorkerId};

/// Where a job stands in a grant's order, least first: by the fields in
/// this order (the derived `Ord`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Place {
    /// False once locality's patience ran out for the job: it goes first.
    patient: bool,
    /// Its owner's pass: the user furthest behind its share first.
    pass: u64,
    owner: UserId,
    /// Higher first.
    priority: Reverse<i32>,
    /// Its locality rank (1 to 3 below; 0 without locality).
    rank: u8,
    /// Bytes of its blobs the worker lacks.
    missing: u64,
    /// Older first.
    job: JobId,
}

impl Scheduler {
    /// The next batch for `worker`, if it has room and there is work it may take.
    /// A worker whose pipeline is full may still get one extra batch, for
    /// a newcomer (see `newcomers_only`).
    pub fn grant(&mut self, worker: WorkerId, now: u64) -> Option<Grant> {
        let state = self.workers.get(&worker)?;
        let held = state.batches.len();
        if state.paused || held > self.config.pipeline {
            return None;
        }
        let extra = held == self.config.pipeline;
        let (donor, offers, only_for) = (state.donor, state.offers, state.only_for.clone());
        let standing = self.standing(donor);
        if standing.quarantined {
            return None;
        }
        let (rate, seed) = (self.config.spot_check_rate, self.config.spot_check_seed);
        let mut placed = self.jobs_in_order(worker, offers, only_for.as_deref(), now);
        if extra {
            self.newcomers_only(worker, now, &mut placed);
            if placed.is_empty() {
                return None;
            }
        }
        let order = in_order(placed);
        let active_workers = self.unpaused.max(1) as u64;
        for job in order {
            let size = self.batch_size(worker, job, active_workers);
            let spot_check = |task: u32| spot_checked(seed, job, task, rate);
            let tasks = self.jobs.get_mut(&job).expect("listed").take_tasks(
                donor,
                size,
                standing.trusted,
                spot_check,
            );
            if !tasks.is_empty() {
                return Some(self.lease(worker, job, tasks, false, now));
            }
        }
        if extra {
            return None;
        }
        let after = self.config.speculate_after_ms?;
        self.speculate(worker, donor, now, after)
    }

    /// For a worker whose pipeline is full, keeps only the jobs of
    /// newcomers (users that got work less than twice `pipeline` times
    /// `target_batch_ms` ago) with no batch on this worker that are at their
    /// fair share, their pass within one quantum of the least pass among
    /// users with work (stride's own precision: a quantum is what a
    /// speed-sized batch on this worker costs them, `target_batch_ms` on
    /// each of its threads). Without it a user whose job arrives while
    /// others fill the workers waits for a pipeline slot, up to
    /// `pipeline` batches of `target_batch_ms`; with it, for one task,
    /// since a worker takes tasks from its batches' jobs in turn
    /// (`grid_protocol::worker`). A user that has a batch here gets
    /// nothing extra, so a worker holds at most `pipeline + 1` batches; and
    /// once every pipeline has turned over, slots open to the newcomer by
    /// its pass alone, so users sharing a grid steadily keep to their
    /// pipelines.
    fn newcomers_only(&self, worker: WorkerId, now: u64, placed: &mut Vec<Place>) {
        let state = &self.workers[&worker];
        let here = self.users_on(worker);
        let Some(least) = self
            .users
            .values()
            .filter(|user| user.has_work)
            .map(|user| user.pass)
            .min()
        else {
            placed.clear();
            return;
        };
        let thread_us =
            self.config.target_batch_ms.saturating_mul(1_000) * u64::from(state.threads);
        placed.retain(|place| {
            let weight = self.users.get(&place.owner).map_or(1, |u| u.weight);
            let quantum = thread_us / u64::from(weight.max(1));
            !here.contains(&place.owner)
                && place.pass <= least.saturating_add(quantum)
                && self.is_newcomer(place.owner, now)
        });
    }

    /// The jobs `worker` may work on, each with its place in the order it
    /// should try them (`in_order`); `grant` falls through to the next when
    /// one has nothing for this worker, so no job waits behind a worse one
    /// and no worker idles while a job it may take has work. The order:
    /// users by least pass (fair share by weight, see `users`); a user's
    /// jobs by priority, higher first, then oldest first. When some job's
    /// tasks read blobs (locality), a user's jobs of one priority go
    /// 1. jobs whose blobs the worker holds (or is fetching: those of the
    ///    batches it has out), oldest first;
    /// 2. jobs no worker is on, fewest bytes to fetch first (new files
    ///    spread over workers instead of every worker fetching one);
    /// 3. the rest, fewest bytes to fetch first, but only jobs with more
    ///    tasks left to hand out than their workers have out: a job about
    ///    to be finished by the workers on it is not worth fetching files
    ///    for (its last round goes to them, and this worker waits);
    ///
    /// and ahead of every user, a job that has had no batch out for
    /// `locality_patience_ms`, so no job starves while workers serve the
    /// files they hold (it is charged to its owner like any other grant).
    /// Fairness thus picks the user, locality the job within the user.
    /// A worker limited to some users (`only_for`) takes only their jobs.
    fn jobs_in_order(
        &mut self,
        worker: WorkerId,
        offers: Capabilities,
        only_for: Option<&[UserId]>,
        now: u64,
    ) -> Vec<Place> {
        // One scan: which users have work (whatever this worker runs),
        // which jobs start their patience, the jobs it may take.
        self.users_before_scan();
        let mut placed = Vec::with_capacity(self.jobs.len());
        let mut local = false;
        for (&id, job) in self.jobs.iter_mut() {
            if job.paused {
                continue;
            }
            let covered = offers.covers(job.plan.needs)
                && only_for.is_none_or(|users| users.contains(&job.plan.owner));
            if covered && job.batches_out == 0 && job.idle_since.is_none() {
                job.idle_since = Some(now);
            }
            if job.issuable() == 0 {
                continue;
            }
            let owner = job.plan.owner;
            let pass = self.users.get_mut(&owner).map_or(0, |user| {
                user.has_work = true;
                user.pass
            });
            if covered {
                local |= !job.plan.locality.is_empty();
                placed.push(Place {
                    patient: true,
                    pass,
                    owner,
                    priority: Reverse(job.plan.priority),
                    rank: 0,
                    missing: 0,
                    job: id,
                });
            }
        }
        if self.users_after_scan(now) {
            // Someone is back from idle, and its pass was lifted.
            for place in &mut placed {
                place.pass = self.users.get(&place.owner).map_or(0, |user| user.pass);
            }
        }
        if local && self.config.locality {
            self.rank_by_locality(worker, now, &mut placed);
        }
        placed
    }

    /// Fills in the locality ranks of the jobs placed for `worker`, and
    /// drops those not worth fetching files for (rule 3).
    fn rank_by_locality(&self, worker: WorkerId, now: u64, placed: &mut Vec<Place>) {
        // What it holds, and what it is fetching: the blobs of the jobs of
        // the batches it has out (its cache report comes only after).
        let state = &self.workers[&worker];
        let mut holds = state.holds.clone();
        for batch in &state.batches {
            if let Some(job) = self.batches.get(batch).and_then(|b| self.jobs.get(&b.job)) {
                holds.extend(job.plan.locality.iter().map(|(key, _)| *key));
            }
        }
        let patience = self.config.locality_patience_ms;
        placed.retain_mut(|place| {
            let job = &self.jobs[&place.job];
            let missing: u64 = job
                .plan
                .locality
                .iter()
                .filter(|(key, _)| !holds.contains(key))
                .map(|(_, bytes)| bytes)
                .sum();
            let starving = job
                .idle_since
                .is_some_and(|since| now.saturating_sub(since) >= patience);
            (place.patient, place.rank, place.missing) = if starving {
                (false, 0, 0)
            } else if missing == 0 {
                (true, 1, 0)
            } else if job.batches_out == 0 {
                (true, 2, missing)
            } else if job.issuable() > job.in_flight() {
                (true, 3, missing)
            } else {
                return false;
            };
            true
        });
    }

    /// A batch of `job` was closed (finished at `now`, or ended otherwise).
    pub(crate) fn batch_closed(&mut self, job: JobId, now: Option<u64>) {
        if let Some(job) = self.jobs.get_mut(&job) {
            job.batches_out = job.batches_out.saturating_sub(1);
            if job.batches_out == 0 {
                job.idle_since = now;
            }
        }
    }

    fn batch_size(&self, worker: WorkerId, job: JobId, active_workers: u64) -> u32 {
        let state = &self.workers[&worker];
        let job_state = &self.jobs[&job];
        let threads = u64::from(state.threads);
        let ms_per_task = state.speed.get(&job).map(|s| s.ms_per_task()).or_else(|| {
            job_state
                .ms_per_task_per_thread()
                .map(|ms| ms / threads as f64)
        });
        let mut size = match ms_per_task {
            Some(ms) => (self.config.target_batch_ms as f64 / ms.max(1e-6)) as u64,
            // Unknown speed: one task per thread, to measure.
            None => threads,
        };
        // Near the end, spread what is left instead of handing it to one worker.
        let left = job_state.issuable();
        size = size.min(left.div_ceil(2 * active_workers).max(threads.min(left)));
        let cap = job_state
            .plan
            .max_batch_tasks
            .map_or(self.config.max_batch_tasks, |cap| {
                cap.min(self.config.max_batch_tasks)
            });
        size.clamp(1, u64::from(cap.max(1))) as u32
    }

    fn lease(
        &mut self,
        worker: WorkerId,
        job: JobId,
        tasks: Vec<u32>,
        speculative: bool,
        now: u64,
    ) -> Grant {
        let batch = self.next_batch;
        self.next_batch += 1;
        let state = self.workers.get_mut(&worker).expect("caller checked");
        let donor = state.donor;
        let local = self.jobs[&job]
            .plan
            .locality
            .iter()
            .all(|(key, _)| state.holds.contains(key));
        let expected_ms = state
            .speed
            .get(&job)
            .map(|s| s.ms_per_task() * tasks.len() as f64);
        let lease_ms = match expected_ms {
            Some(ms) => self.config.min_lease_ms.max((3.0 * ms) as u64),
            None => self.config.min_lease_ms,
        };
        state.batches.push(batch);
        let started = state.clocks.granted(job, now);
        self.refresh_ready(worker);
        let trusted = self.standing(donor).trusted;
        let job_state = self.jobs.get_mut(&job).expect("caller checked");
        job_state.batches_out += 1;
        job_state.idle_since = None;
        let (owner, task_ms) = (job_state.plan.owner, job_state.ms_per_task_per_thread());
        let mut reissued = 0;
        for &task in &tasks {
            if job_state.add_holder(
                task,
                Holder {
                    worker,
                    donor,
                    batch,
                    active: true,
                },
                trusted,
            ) {
                reissued += 1;
            }
        }
        self.counters.batches_granted += 1;
        self.counters.tasks_issued += tasks.len() as u64;
        if speculative {
            self.counters.tasks_speculative += tasks.len() as u64;
        } else {
            self.counters.tasks_reissued += reissued;
        }
        let charged = self.charge(owner, tasks.len(), task_ms);
        let ranges = TaskRanges::from_indices(tasks.iter().copied());
        self.batches.insert(
            batch,
            BatchState {
                worker,
                job,
                waiting: vec![true; tasks.len()],
                outstanding: tasks.len() as u32,
                tasks,
                granted_at: now,
                started,
                deadline: now + lease_ms,
                lease_ms,
                expired: false,
                unmeasured_charge: task_ms.is_none().then_some(charged),
            },
        );
        Grant {
            batch,
            job,
            tasks: ranges,
            lease_ms,
            speculative,
            local,
        }
    }

    /// Copies of tasks that other donors have held for at least `after` ms,
    /// oldest leases first, one extra copy per task at most.
    fn speculate(
        &mut self,
        worker: WorkerId,
        donor: DonorId,
        now: u64,
        after: u64,
    ) -> Option<Grant> {
        let threads = u64::from(self.workers[&worker].threads);
        let offers = self.workers[&worker].offers;
        let only_for = self.workers[&worker].only_for.clone();
        let mut picked: Option<(JobId, Vec<u32>)> = None;
        for batch in self.batches.values() {
            if batch.worker == worker || now.saturating_sub(batch.granted_at) < after {
                continue;
            }
            if picked.as_ref().is_some_and(|(job, _)| *job != batch.job) {
                continue;
            }
            let Some(job) = self.jobs.get(&batch.job) else {
                continue;
            };
            if job.paused
                || !offers.covers(job.plan.needs)
                || only_for
                    .as_deref()
                    .is_some_and(|users| !users.contains(&job.plan.owner))
            {
                continue;
            }
            let size = self.workers[&worker]
                .speed
                .get(&batch.job)
                .map_or(threads, |s| {
                    (self.config.target_batch_ms as f64 / s.ms_per_task().max(1e-6)) as u64
                })
                .clamp(
                    1,
                    u64::from(
                        job.plan
                            .max_batch_tasks
                            .unwrap_or(u32::MAX)
                            .min(self.config.max_batch_tasks)
                            .max(1),
                    ),
                ) as usize;
            let entry = picked.get_or_insert_with(|| (batch.job, Vec::new()));
            for (i, &task) in batch.tasks.iter().enumerate() {
                if entry.1.len() >= size {
                    break;
                }
                if batch.waiting[i] && job.may_speculate(task, donor) && !entry.1.contains(&task) {
                    entry.1.push(task);
                }
            }
            if entry.1.len() >= size {
                break;
            }
        }
        let (job, mut tasks) = picked.filter(|(_, t)| !t.is_empty())?;
        tasks.sort_unstable();
        Some(self.lease(worker, job, tasks, true, now))
    }
}

/// The jobs placed, least first. The least usually takes the batch, so it
/// is found in O(jobs); the rest are sorted only if it had nothing.
fn in_order(mut placed: Vec<Place>) -> impl Iterator<Item = JobId> {
    let least = (0..placed.len()).min_by_key(|&i| placed[i]);
    let first = least.map(|i| placed.swap_remove(i).job);
    let rest = iter::once_with(move || {
        placed.sort_unstable();
        placed.into_iter().map(|place| place.job)
    });
    first.into_iter().chain(rest.flatten())
}

/// Whether a trusted donor's task still gets the full quorum: a keyed hash,
/// so the choice is stable for a task yet unpredictable without the seed.
pub(crate) fn spot_checked(seed: u64, job: JobId, task: u32, rate: f64) -> bool {
    if rate <= 0.0 {
        return false;
    }
    // SplitMix64 finaliser over the seed, job and task.
    let mut x = seed
        ^ job.wrapping_mul(0x9e37_79b9_7f4a_7c15)
        ^ u64::from(task).wrapping_mul(0xd1b5_4a32_d192_ed03);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^= x >> 31;
    ((x >> 11) as f64 / (1u64 << 53) as f64) < rate
}
