//! Workers joining, leaving, pausing, handing tasks back and reporting
//! failures.

use super::*;

impl Grid {
    // ---- workers --------------------------------------------------------------

    /// The donor a connection belongs to. Replicas of a task never go to
    /// one donor twice, and reputation is kept per donor. By default a donor
    /// is a remote address, so replicas land on different machines; loopback
    /// is the exception, so one machine can run several local workers. Then a
    /// browser tab (its session), else the connection itself; the epoch keeps
    /// connection donors of this run apart from votes stored by earlier runs.
    pub fn donor_of(&self, hello: &Hello, client: Option<SocketAddr>, connection: u64) -> u64 {
        if let Some(ip) = client.map(|a| a.ip()).filter(|ip| !ip.is_loopback())
            && self.config.distinct_addresses
        {
            return id_from(&[b"address", ip.to_string().as_bytes()]);
        }
        match &hello.session {
            Some(session) => id_from(&[b"session", session.as_bytes()]),
            None => id_from(&[
                b"connection",
                &self.epoch.to_le_bytes(),
                &connection.to_le_bytes(),
            ]),
        }
    }

    /// Admits a worker whose hello was valid, unless its donor is
    /// quarantined.
    pub fn register_worker(
        &self,
        hello: Hello,
        addr: Option<SocketAddr>,
        outbox: mpsc::Sender<Outbound>,
    ) -> Result<Arc<WorkerConn>, (CloseCode, String)> {
        // Before any lock the scheduler's: the users its hello names.
        let only_for = self.users_named(&hello.for_users)?;
        let id = self.next_worker.fetch_add(1, Ordering::Relaxed);
        let donor = self.donor_of(&hello, addr, id);
        // One lock scope: a donor quarantined a moment ago is not admitted.
        let mut scheduler = self.scheduler();
        if scheduler.standing(donor).quarantined {
            return Err((
                CloseCode::Quarantined,
                "this donor's results failed validation; it gets no more work".into(),
            ));
        }
        let worker = Arc::new(WorkerConn {
            id,
            donor,
            addr,
            connected_at: unix_ms(),
            outbox,
            tasks_done: AtomicU64::new(0),
            fuel_used: AtomicU64::new(0),
            results_rejected: AtomicU64::new(0),
            paused: AtomicBool::new(false),
            quarantined: AtomicBool::new(false),
            kick: tokio::sync::Notify::new(),
            hello,
        });
        let offers = crate::jobs::offers(&worker.hello);
        scheduler.add_worker(id, donor, worker.hello.threads, offers, self.now_ms());
        scheduler.limit_worker_to(id, &only_for);
        if !worker.hello.holds.is_empty() {
            let holds: Vec<u64> = worker.hello.holds.iter().map(locality_key).collect();
            scheduler.update_holdings(id, &holds, &[]);
        }
        self.workers.insert(id, worker.clone());
        drop(scheduler);
        self.counters
            .connections_total
            .fetch_add(1, Ordering::Relaxed);
        tracing::info!(worker = id, kind = worker.hello.kind.name(), threads = worker.hello.threads, name = ?worker.hello.name, "worker joined");
        if self.monitor.active() {
            let info = self.worker_info(&worker, &self.scheduler());
            self.monitor
                .publish(&MonitorEvent::WorkerJoined { worker: info });
        }
        Ok(worker)
    }

    /// The ids of the users a hello's `for` names; a name no user has
    /// refuses the hello, saying which.
    fn users_named(
        &self,
        names: &[String],
    ) -> Result<Vec<crate::users::UserId>, (CloseCode, String)> {
        let users = self.users();
        names
            .iter()
            .map(|name| {
                users.by_name(name).map(|user| user.id).ok_or_else(|| {
                    (
                        CloseCode::BadHello,
                        format!("for: no user named {name:?} on this grid"),
                    )
                })
            })
            .collect()
    }

    /// Counts a new connection from `ip`; `None` if that address already has
    /// as many as it may (loopback is not limited).
    pub fn open_address_slot(
        self: &Arc<Self>,
        ip: Option<std::net::IpAddr>,
    ) -> Option<AddressSlot> {
        let Some(ip) = ip.filter(|ip| !ip.is_loopback()) else {
            return Some(AddressSlot {
                grid: None,
                ip: None,
            });
        };
        let mut count = self.per_address.entry(ip).or_insert(0);
        if *count >= self.config.max_connections_per_address {
            return None;
        }
        *count += 1;
        Some(AddressSlot {
            grid: Some(self.clone()),
            ip: Some(ip),
        })
    }

    /// The worker's connection ended; its tasks go to others.
    pub fn unregister_worker(&self, id: u64) {
        if self.workers.remove(&id).is_none() {
            return;
        }
        self.scheduler().remove_worker(id);
        tracing::info!(worker = id, "worker left");
        self.monitor
            .publish(&MonitorEvent::WorkerLeft { worker: id });
        self.dispatch();
    }

    pub fn workers(&self) -> Vec<WorkerInfo> {
        let scheduler = self.scheduler();
        let mut list: Vec<WorkerInfo> = self
            .workers
            .iter()
            .map(|w| self.worker_info(&w, &scheduler))
            .collect();
        list.sort_by_key(|w| w.id);
        list
    }

    /// One connection as `GET /api/workers` and the monitor show it.
    fn worker_info(&self, w: &WorkerConn, scheduler: &Scheduler) -> WorkerInfo {
        let standing = scheduler.standing(w.donor);
        WorkerInfo {
            id: w.id,
            kind: w.hello.kind,
            threads: w.hello.threads,
            name: w.hello.name.clone(),
            session: w.hello.session.clone(),
            donor: w.donor,
            addr: w.addr.map(|a| a.to_string()),
            connected_at: w.connected_at,
            paused: w.paused.load(Ordering::Relaxed),
            tasks_done: w.tasks_done.load(Ordering::Relaxed),
            fuel_used: w.fuel_used.load(Ordering::Relaxed),
            tasks_in_flight: scheduler.tasks_held_by(w.id),
            validated: standing.validated,
            trusted: standing.trusted,
            quarantined: standing.quarantined,
            results_rejected: w.results_rejected.load(Ordering::Relaxed),
        }
    }

    pub fn worker_count(&self) -> usize {
        self.workers.len()
    }

    pub fn set_worker_paused(&self, worker: &WorkerConn, paused: bool) {
        worker.paused.store(paused, Ordering::Relaxed);
        self.scheduler().set_worker_paused(worker.id, paused);
        if !paused {
            self.dispatch();
        }
    }

    /// The worker's cache changed: the scheduler prefers it for jobs that
    /// read what it now holds.
    pub fn on_holding(
        &self,
        worker: &WorkerConn,
        added: &[ContentDigest],
        removed: &[ContentDigest],
    ) {
        let added: Vec<u64> = added.iter().map(locality_key).collect();
        let removed: Vec<u64> = removed.iter().map(locality_key).collect();
        self.scheduler()
            .update_holdings(worker.id, &added, &removed);
        self.dispatch();
    }

    pub fn on_return(&self, worker: &WorkerConn, batch: u64, tasks: &TaskRanges) {
        let returned = self.scheduler().return_tasks(worker.id, batch, tasks);
        tracing::debug!(worker = worker.id, batch, ?returned, "tasks returned");
        self.dispatch();
    }

    pub async fn on_failed(&self, worker: &WorkerConn, batch: u64, task: u32, error: &str) {
        tracing::warn!(
            worker = worker.id,
            batch,
            task,
            error,
            "worker could not compute a task"
        );
        let mut effects = {
            let mut scheduler = self.scheduler();
            let _ = scheduler.fail_task(worker.id, batch, task, self.now_ms());
            scheduler.take_effects()
        };
        // A job that fails for this failure says what the worker said.
        for effect in &mut effects {
            if let Effect::TaskFailed {
                task: failed,
                reason,
                ..
            } = effect
                && *failed == task
            {
                reason.push_str(&format!("; the last worker said: {error}"));
            }
        }
        self.apply_effects_async(effects).await;
        self.dispatch();
    }
}

/// One counted connection from a remote address; dropping it uncounts it.
#[derive(Debug)]
pub struct AddressSlot {
    grid: Option<Arc<Grid>>,
    ip: Option<std::net::IpAddr>,
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        if let (Some(grid), Some(ip)) = (&self.grid, self.ip) {
            let emptied = grid.per_address.get_mut(&ip).is_some_and(|mut count| {
                *count = count.saturating_sub(1);
                *count == 0
            });
            if emptied {
                grid.per_address.remove_if(&ip, |_, count| *count == 0);
            }
        }
    }
}

/// A blob as the scheduler's locality keys name it: its digest's first
/// eight bytes (digests are uniform; a collision only misplaces a
/// preference).
pub fn locality_key(digest: &ContentDigest) -> u64 {
    u64::from_le_bytes(digest.0[..8].try_into().expect("eight bytes"))
}
