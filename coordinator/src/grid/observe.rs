//! What the grid shows about itself: monitor events and snapshots (sized
//! for a big grid: see [`crate::monitor`]), the tiles of images in
//! progress, and the Prometheus metrics.

use super::*;
use crate::monitor::fleet::{self, WorkerRow};
use crate::monitor::{nonces, window};
use grid_protocol::api::{JobCounts, JobQuery, JobsLeftOut, WorkerSummary};

impl Grid {
    /// Publishes coalesced job progress; with `sample`, also throughput and
    /// worker figures. Called on a timer.
    pub fn monitor_tick(&self, sample: bool) {
        for id in self.monitor.take_dirty() {
            if let Some(job) = self.job(id) {
                self.job_event(&job, JobEvent::Progress);
            }
        }
        // Throughput is sampled whether or not anyone watches, so that a
        // dashboard opened later finds the last minutes in its snapshot.
        if sample {
            let watched = self.monitor.active();
            // Unwatched, the sample needs only totals: no worker list, no
            // scheduler lock, even with thousands of idle connections.
            let mut totals = Vec::new();
            let mut threads = 0;
            for worker in self.workers.iter() {
                threads += u64::from(worker.hello.threads);
                if watched {
                    totals.push((worker.id, worker.tasks_done.load(Ordering::Relaxed)));
                }
            }
            let (throughput, rates) = self.monitor.sample_with_count(
                self.now_ms(),
                self.tasks_done(),
                &totals,
                self.workers.len(),
                threads,
            );
            self.monitor
                .publish(&MonitorEvent::Throughput { sample: throughput });
            if !watched {
                return;
            }
            let summary = self.worker_summary(&rates);
            self.monitor.publish_workers(self.now_ms(), summary);
        }
    }

    /// The connected workers in brief; `rates` is each connection's tasks
    /// per second. The connections are read first and the scheduler locked
    /// after, once, for what only it knows (in flight, trust): never the
    /// other way round, which registering a worker does.
    fn worker_summary(&self, rates: &HashMap<u64, f64>) -> WorkerSummary {
        let connections: Vec<Arc<WorkerConn>> = self.workers.iter().map(|w| w.clone()).collect();
        let scheduler = self.scheduler();
        let rows: Vec<WorkerRow<'_>> = connections
            .iter()
            .map(|w| {
                let standing = scheduler.standing(w.donor);
                WorkerRow {
                    id: w.id,
                    donor: w.donor,
                    kind: w.hello.kind,
                    threads: w.hello.threads,
                    name: w.hello.name.as_deref(),
                    paused: w.paused.load(Ordering::Relaxed),
                    tasks_done: w.tasks_done.load(Ordering::Relaxed),
                    fuel_used: w.fuel_used.load(Ordering::Relaxed),
                    tasks_in_flight: scheduler.tasks_held_by(w.id),
                    trusted: standing.trusted,
                    quarantined: standing.quarantined,
                }
            })
            .collect();
        drop(scheduler);
        fleet::summarize(&rows, rates)
    }

    /// A monitor's first frame (and the one after it fell behind) for
    /// `caller`, and the ids of the jobs it lists. Its size does not grow
    /// with history or the fleet: a window of the jobs (every live one up
    /// to a cap, then the newest finished, within a byte budget; the rest
    /// counted), the workers summed up, hashsearch nonces as their count
    /// and smallest few.
    pub fn monitor_snapshot(&self, caller: &crate::users::Caller) -> (MonitorEvent, Vec<u64>) {
        let mut counts = JobCounts::default();
        for (state, count) in self.job_counts(caller) {
            counts.add_many(state, count);
        }
        let live: Vec<u64> = self
            .jobs
            .iter()
            .filter(|j| caller.may_see(j.definition.owner) && !j.state().is_finished())
            .map(|j| j.id)
            .collect();
        // The newest finished jobs, from memory and the store.
        let query = JobQuery {
            limit: MonitorEvent::SNAPSHOT_FINISHED_JOBS as u32,
            before: None,
            states: vec![JobState::Done, JobState::Failed, JobState::Cancelled],
        };
        let newest_finished = self.list_jobs_page(caller, &query).jobs;
        let finished_ids: Vec<u64> = newest_finished.iter().map(|s| s.id).collect();
        let window = window::Window::choose(&live, &finished_ids);
        let mut newest_finished: HashMap<u64, JobStatus> =
            newest_finished.into_iter().map(|s| (s.id, s)).collect();
        let mut fill = window::Fill::new(MonitorEvent::SNAPSHOT_JOBS_BYTES);
        for &id in window.ids() {
            let mut status = match newest_finished.remove(&id) {
                Some(status) => status,
                None => match self.job(id) {
                    Some(job) => self.status_of(&job),
                    None => continue,
                },
            };
            let nonces = nonces::take_nonces(&mut status).map(|n| nonces::first(id, &n));
            fill.offer(status, nonces);
        }
        let (jobs, nonces) = fill.finish();
        let ids: Vec<u64> = jobs.iter().map(|j| j.id).collect();
        let listed_live = jobs.iter().filter(|j| !j.state.is_finished()).count() as u64;
        let finished_count = counts.done + counts.failed + counts.cancelled;
        let jobs_left_out = JobsLeftOut {
            live: (live.len() as u64).saturating_sub(listed_live),
            finished: finished_count.saturating_sub(jobs.len() as u64 - listed_live),
        };
        let workers = match self.monitor.recent_workers(self.now_ms(), 2_000) {
            Some(summary) => summary,
            None => self.worker_summary(&HashMap::new()),
        };
        let snapshot = MonitorEvent::Snapshot {
            time: unix_ms(),
            jobs,
            jobs_left_out,
            job_counts: counts,
            nonces,
            workers,
            throughput: self.monitor.history(),
        };
        (snapshot, ids)
    }

    /// Tile frames for the parts of running Mandelbrot images finished so
    /// far, for a monitor that just connected: of the jobs `listed` (its
    /// snapshot's) that `caller` may see.
    pub fn image_tiles_so_far(
        &self,
        caller: &crate::users::Caller,
        listed: &[u64],
    ) -> Vec<Vec<u8>> {
        let mut tiles = Vec::new();
        for job in listed
            .iter()
            .filter_map(|id| self.job(*id))
            .filter(|j| caller.may_see(j.definition.owner))
        {
            let KernelSpec::Mandelbrot(p) = job.spec() else {
                continue;
            };
            let live = job.live();
            let Some(collator) = live.collator.as_ref() else {
                continue;
            };
            let Some(image) = collator.image() else {
                continue;
            };
            let width = p.width as usize;
            // Runs of consecutive finished tasks are consecutive rows.
            let mut task = 0;
            while task < collator.tasks() {
                if !collator.contains(task) {
                    task += 1;
                    continue;
                }
                let start = task;
                while task < collator.tasks() && collator.contains(task) {
                    task += 1;
                }
                let first = row_of(job.spec(), job.tasks(), start);
                let end = if task == job.tasks() {
                    p.height
                } else {
                    row_of(job.spec(), job.tasks(), task)
                };
                tiles.push(tile_frame(
                    job.id,
                    first,
                    p.width,
                    &image[first as usize * width..end as usize * width],
                ));
            }
        }
        tiles
    }

    /// Renders `GET /metrics`.
    pub fn metrics(&self) -> String {
        use crate::metrics::family;
        self.record_batch_latencies();
        let mut out = String::new();
        // Every user's jobs, the finished ones counted in the store.
        let states: HashMap<&'static str, f64> = self
            .job_counts(&self.first_admin())
            .into_iter()
            .map(|(state, count)| (state.name(), count as f64))
            .collect();
        let state_samples: Vec<(String, f64)> = JobState::ALL
            .iter()
            .map(|s| {
                (
                    format!("state=\"{}\"", s.name()),
                    states.get(s.name()).copied().unwrap_or(0.0),
                )
            })
            .collect();
        fn as_refs(v: &[(String, f64)]) -> Vec<(&str, f64)> {
            v.iter().map(|(l, x)| (l.as_str(), *x)).collect()
        }
        family(
            &mut out,
            "grid_jobs",
            "gauge",
            "Jobs by state.",
            &as_refs(&state_samples),
        );
        let c = self.scheduler_counters();
        family(
            &mut out,
            "grid_tasks_issued_total",
            "counter",
            "Tasks sent to workers, including re-issues and copies.",
            &[("", c.tasks_issued as f64)],
        );
        family(
            &mut out,
            "grid_tasks_reissued_total",
            "counter",
            "Tasks sent again after a lease was lost.",
            &[("", c.tasks_reissued as f64)],
        );
        family(
            &mut out,
            "grid_tasks_speculative_total",
            "counter",
            "Straggler copies sent to idle workers.",
            &[("", c.tasks_speculative as f64)],
        );
        family(
            &mut out,
            "grid_tasks_completed_total",
            "counter",
            "Task results made durable and collated.",
            &[("", self.tasks_done() as f64)],
        );
        family(
            &mut out,
            "grid_leases_expired_total",
            "counter",
            "Batch leases that expired.",
            &[("", c.leases_expired as f64)],
        );
        family(
            &mut out,
            "grid_results_total",
            "counter",
            "Results received from workers, by outcome.",
            &[
                ("outcome=\"accepted\"", c.results_accepted as f64),
                (
                    "outcome=\"duplicate\"",
                    (c.results_duplicate + c.results_stale) as f64,
                ),
                ("outcome=\"rejected\"", c.results_rejected as f64),
                (
                    "outcome=\"implausible\"",
                    self.counters.results_implausible.load(Ordering::Relaxed) as f64,
                ),
            ],
        );
        family(
            &mut out,
            "grid_fuel_used_total",
            "counter",
            "Fuel of users' kernel tasks decided: one unit per WebAssembly instruction of the submitted module, the same in every engine.",
            &[("", self.counters.fuel_used.load(Ordering::Relaxed) as f64)],
        );
        family(
            &mut out,
            "grid_quorum_disagreements_total",
            "counter",
            "Tasks whose replicas disagreed.",
            &[("", c.quorum_disagreements as f64)],
        );
        family(
            &mut out,
            "grid_donors_quarantined_total",
            "counter",
            "Donors whose results failed validation.",
            &[("", c.donors_quarantined as f64)],
        );
        family(
            &mut out,
            "grid_tasks_rechecked_total",
            "counter",
            "Decided tasks checked again after their donor was quarantined.",
            &[("", c.tasks_rechecked as f64)],
        );
        family(
            &mut out,
            "grid_tasks_solo_total",
            "counter",
            "Replicated tasks decided by one trusted donor alone.",
            &[("", c.tasks_solo as f64)],
        );
        family(
            &mut out,
            "grid_results_verified_wrong_total",
            "counter",
            "Results the coordinator re-computed and found wrong.",
            &[(
                "",
                self.counters.results_verified_wrong.load(Ordering::Relaxed) as f64,
            )],
        );
        let (mut native, mut browser) = (0.0, 0.0);
        for w in self.workers.iter() {
            match w.hello.kind {
                WorkerKind::Native => native += 1.0,
                WorkerKind::Browser => browser += 1.0,
            }
        }
        family(
            &mut out,
            "grid_workers",
            "gauge",
            "Connected workers by kind.",
            &[("kind=\"native\"", native), ("kind=\"browser\"", browser)],
        );
        family(
            &mut out,
            "grid_connections_total",
            "counter",
            "Worker connections accepted.",
            &[(
                "",
                self.counters.connections_total.load(Ordering::Relaxed) as f64,
            )],
        );
        let closes: Vec<(String, f64)> = crate::sync::lock(&self.counters.closes, "close counters")
            .iter()
            .map(|(reason, n)| (format!("reason=\"{reason}\""), *n as f64))
            .collect();
        family(
            &mut out,
            "grid_connections_closed_total",
            "counter",
            "Worker connections the coordinator closed, by reason.",
            &as_refs(&closes),
        );
        self.render_blob_metrics(&mut out);
        let count = |counter: &AtomicU64| counter.load(Ordering::Relaxed) as f64;
        family(
            &mut out,
            "grid_blob_cache_batches_total",
            "counter",
            "Batches of jobs with files, by whether the worker had reported holding all of them (hit) or not (miss).",
            &[
                ("result=\"hit\"", count(&self.counters.blob_cache_hits)),
                ("result=\"miss\"", count(&self.counters.blob_cache_misses)),
            ],
        );
        family(
            &mut out,
            "grid_replica_bytes_saved_total",
            "counter",
            "Output bytes digest-only replicas did not send (their outputs' lengths less the digest entries sent instead).",
            &[("", count(&self.counters.replica_bytes_saved))],
        );
        family(
            &mut out,
            "grid_output_blob_bytes_total",
            "counter",
            "Bytes of task outputs workers stored as blobs (over the results frame threshold) rather than sent in results frames.",
            &[("", count(&self.counters.output_blob_bytes))],
        );
        self.batch_latency.render(
            &mut out,
            "grid_batch_latency_seconds",
            "Time from granting a batch to its last result.",
        );
        self.store.commit_latency().render(
            &mut out,
            "grid_store_commit_seconds",
            "Time to apply and commit one group of writes.",
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grid::testing::{join, open_grid};
    use crate::jobs::Lifecycle;
    use grid_kernels::ResultSummary;
    use grid_kernels::spec::{HashsearchParams, PrimesParams};
    use grid_protocol::api::JobNonces;
    use grid_scheduler::Replication;

    fn hashsearch() -> KernelSpec {
        KernelSpec::Hashsearch(HashsearchParams {
            prefix: "a prefix".into(),
            difficulty: 8,
            start: 0,
            end: 1 << 40,
        })
    }

    fn definition(id: u64, spec: KernelSpec) -> JobDefinition {
        JobDefinition {
            priority: 0,
            owner: crate::users::FIRST_ADMIN,
            spec,
            tasks: 100,
            replication: Replication::SINGLE,
            created_at: id,
            inputs: None,
        }
    }

    /// A live job in memory, as a restart revives it (no collator).
    fn insert_live_job(grid: &Grid, id: u64, spec: KernelSpec) {
        let mut lifecycle = Lifecycle::queued();
        lifecycle.state = JobState::Running;
        let live = JobLive {
            tasks_done: 0,
            lifecycle,
            collator: None,
        };
        grid.jobs
            .insert(id, Arc::new(Job::new(id, definition(id, spec), None, live)));
    }

    /// `count` finished jobs written to the store under `dir` before the
    /// grid opens it: the newest 100 hashsearch jobs with 10,000 nonces
    /// each, every seventh failed with a long reason, the rest done.
    async fn store_finished_jobs(dir: &std::path::Path, count: u64, nonces: &[u64]) {
        let store = crate::store::Store::open(dir, crate::store::Durability::Normal).unwrap();
        let mut writes = Vec::new();
        for id in 1..=count {
            let mut lifecycle = Lifecycle::queued();
            lifecycle.version = 2;
            lifecycle.finished_at = Some(id);
            let spec = if id > count - 100 {
                lifecycle.state = JobState::Done;
                lifecycle.result = Some(ResultSummary::Hashsearch {
                    nonces: nonces.to_vec(),
                });
                hashsearch()
            } else if id.is_multiple_of(7) {
                lifecycle.state = JobState::Failed;
                lifecycle.error = Some("a reason that goes on ".repeat(20));
                KernelSpec::Primes(PrimesParams { start: 0, end: id })
            } else {
                lifecycle.state = JobState::Done;
                lifecycle.result = Some(ResultSummary::Primes { count: id });
                KernelSpec::Primes(PrimesParams { start: 0, end: id })
            };
            let store = store.clone();
            writes.push(tokio::spawn(async move {
                let stored = store.insert_job(definition(id, spec)).await.unwrap();
                store.update_job(stored, lifecycle).await.unwrap();
            }));
            if writes.len() == 1024 {
                for write in writes.drain(..) {
                    write.await.unwrap();
                }
            }
        }
        for write in writes {
            write.await.unwrap();
        }
        store.flush().await.unwrap();
    }

    /// 20,000 workers, 100,000 finished jobs (the newest hashsearch jobs
    /// with 10,000 nonces each, failed ones with long reasons), 150 live
    /// ones, ten minutes of throughput: the snapshot stays under 256 KiB,
    /// counts what it leaves out and sums the workers up.
    #[tokio::test]
    async fn a_snapshot_of_a_big_grid_stays_small() {
        let dir = tempfile::tempdir().unwrap();
        let nonces: Vec<u64> = (0..10_000).map(|n| n * 1_000_003).collect();
        store_finished_jobs(dir.path(), 100_000, &nonces).await;
        let grid = open_grid(dir.path()).await;
        for id in 100_001..=100_150u64 {
            insert_live_job(&grid, id, hashsearch());
        }
        let mut workers = Vec::new();
        for i in 0..20_000u64 {
            let (worker, queue) = join(&grid, 4);
            worker.tasks_done.store(i, Ordering::Relaxed);
            workers.push((worker, queue));
        }
        for t in 0..600 {
            grid.monitor
                .sample(1_000 * (t + 1), 1_000_000 * t, &[], 80_000);
        }

        let (snapshot, listed) = grid.monitor_snapshot(&grid.first_admin());
        let text = snapshot.encode();
        println!("the snapshot: {} bytes", text.len());
        assert!(
            text.len() < 256 * 1024,
            "the snapshot is {} bytes",
            text.len()
        );
        let MonitorEvent::Snapshot {
            jobs,
            jobs_left_out,
            job_counts,
            nonces: windows,
            workers: summary,
            throughput,
            ..
        } = MonitorEvent::decode(&text).unwrap()
        else {
            panic!("not a snapshot")
        };
        assert_eq!(throughput.len(), 600);
        assert_eq!(job_counts.total(), 100_150);
        assert_eq!(job_counts.running, 150);
        assert_eq!(
            job_counts.failed,
            99_900 / 7,
            "every seventh but the hashsearch jobs"
        );
        let live = jobs.iter().filter(|j| !j.state.is_finished()).count() as u64;
        assert_eq!(live, MonitorEvent::SNAPSHOT_LIVE_JOBS as u64);
        assert_eq!(jobs[0].id, 100_150, "the newest live job first");
        assert_eq!(jobs_left_out.live, 150 - live);
        assert_eq!(
            jobs_left_out.finished,
            100_000 - (jobs.len() as u64 - live),
            "every finished job not listed is counted"
        );
        assert!(jobs.len() as u64 > live, "some finished jobs are listed");
        assert_eq!(jobs[live as usize].id, 100_000, "then the newest finished");
        assert_eq!(listed, jobs.iter().map(|j| j.id).collect::<Vec<_>>());
        for job in &jobs {
            if let Some(ResultSummary::Hashsearch { nonces }) = &job.result {
                assert!(nonces.is_empty(), "job {}'s nonces are left out", job.id);
            }
        }
        let done = windows
            .iter()
            .find(|w| w.job == 100_000)
            .expect("the listed hashsearch jobs' nonces");
        assert_eq!(done.count, 10_000);
        assert_eq!(done.first.as_deref(), Some(&nonces[..JobNonces::FIRST]));

        assert_eq!(summary.connections, 20_000);
        assert_eq!(summary.threads, 80_000);
        assert_eq!(summary.donors, 20_000);
        assert_eq!(summary.tasks_done, (0..20_000u64).sum::<u64>());
        assert_eq!(summary.top_donors.len(), WorkerSummary::TOP_DONORS);
        assert_eq!(summary.top_donors[0].tasks_done, 19_999);
    }
}
