//! What the grid shows about itself: monitor events, the tiles of images
//! in progress, and the Prometheus metrics.

use super::*;
use grid_protocol::api::WorkerStats;

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
            let workers = self.workers();
            let stats = workers
                .iter()
                .map(|w| WorkerStats {
                    id: w.id,
                    tasks_done: w.tasks_done,
                    fuel_used: w.fuel_used,
                    tasks_in_flight: w.tasks_in_flight,
                    rate: rates.get(&w.id).copied().unwrap_or(0.0),
                    paused: w.paused,
                })
                .collect();
            self.monitor
                .publish(&MonitorEvent::Workers { workers: stats });
        }
    }

    /// Tile frames for the parts of running Mandelbrot images finished so
    /// far, for a monitor that just connected.
    pub fn image_tiles_so_far(&self, caller: &crate::users::Caller) -> Vec<Vec<u8>> {
        let mut tiles = Vec::new();
        for job in self
            .jobs
            .iter()
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
        let mut states: HashMap<&'static str, f64> = HashMap::new();
        for job in self.jobs.iter() {
            *states.entry(job.state().name()).or_default() += 1.0;
        }
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
