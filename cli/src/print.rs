//! How the client commands print what the coordinator answers: tables for
//! people, pretty JSON with `--json`.

use grid_kernels::ResultSummary;
use grid_protocol::api::{AuditEntry, BlobListing, JobStatus, UserInfo, UserToken, WorkerInfo};
use indicatif::HumanBytes;
use serde::Serialize;

/// Pretty JSON of an API answer. It goes through `serde_json::Value` so that
/// keys print in the order they always have (sorted), whatever the order of
/// the type's fields: scripts that compare the text see no change.
pub(crate) fn print_json(answer: &impl Serialize) {
    let value = serde_json::to_value(answer).expect("API answers are plain data");
    println!(
        "{}",
        serde_json::to_string_pretty(&value).expect("JSON values print")
    );
}

fn seconds(ms: Option<u64>) -> String {
    ms.map_or_else(|| "-".into(), |ms| format!("{:.2} s", ms as f64 / 1000.0))
}

/// A number as JSON writes it (`4.0`, not `4`), as this column always showed it.
fn json_number(x: f64) -> String {
    serde_json::to_string(&x).expect("a number prints")
}

fn result_text(status: &JobStatus) -> String {
    let Some(result) = &status.result else {
        return status
            .error
            .as_ref()
            .map_or_else(|| "-".into(), |e| format!("error: {e}"));
    };
    match result {
        ResultSummary::Primes { count } => format!("{count} primes"),
        ResultSummary::MontecarloPi {
            inside,
            samples,
            estimate,
        } => format!(
            "pi ~ {} ({inside} of {samples} inside)",
            json_number(*estimate)
        ),
        ResultSummary::Hashsearch { nonces } => format!("{} nonces", nonces.len()),
        ResultSummary::Mandelbrot { width, height, .. } => format!(
            "{width}x{height} image (grid results {} --format png -o image.png)",
            status.id
        ),
        ResultSummary::Wasm {
            tasks_failed,
            fuel_used,
            ..
        } => match tasks_failed {
            0 => format!("all tasks succeeded, {fuel_used} fuel"),
            n => format!(
                "{n} of {} tasks failed, {fuel_used} fuel",
                status.tasks.total
            ),
        },
    }
}

pub(crate) fn print_status(status: &JobStatus) {
    println!(
        "job {}  {}  {}",
        status.id,
        status.spec.kind(),
        status.state
    );
    println!("  tasks    {}/{}", status.tasks.done, status.tasks.total);
    println!("  elapsed  {}", seconds(status.elapsed_ms));
    println!("  result   {}", result_text(status));
    if status.revised > 0 {
        println!(
            "  revised  {} answers, replaced after a donor was caught lying",
            status.revised
        );
    }
}

/// The jobs as a table; with an OWNER column when they belong to more
/// than one user (an admin's view: a user sees only its own jobs).
pub(crate) fn print_jobs(jobs: &[JobStatus]) {
    if jobs.is_empty() {
        println!("no jobs");
        return;
    }
    let owners = jobs.iter().any(|j| j.owner != jobs[0].owner);
    let width = jobs.iter().map(|j| j.owner.len()).max().unwrap_or(0).max(5);
    let owner = |name: &str| {
        if owners {
            format!("{name:<width$}  ")
        } else {
            String::new()
        }
    };
    println!(
        "{:>5}  {}{:<14} {:<10} {:>17}  {:>10}  RESULT",
        "ID",
        owner("OWNER"),
        "KERNEL",
        "STATE",
        "TASKS",
        "ELAPSED"
    );
    for job in jobs {
        println!(
            "{:>5}  {}{:<14} {:<10} {:>17}  {:>10}  {}",
            job.id,
            owner(&job.owner),
            job.spec.kind().name(),
            job.state.name(),
            format!("{}/{}", job.tasks.done, job.tasks.total),
            seconds(job.elapsed_ms),
            result_text(job),
        );
    }
}

/// A new token, with how to use it: it is shown this once.
pub(crate) fn print_token(made: &UserToken) {
    println!("{}", made.token);
    eprintln!(
        "the token of user {} (shown once; it is stored hashed): export GRID_TOKEN={}",
        made.user.name, made.token
    );
}

pub(crate) fn print_users(users: &[UserInfo]) {
    println!(
        "{:<20} {:<6} {:>6}  {:>11}  {:>11}  {:>10}",
        "NAME", "ADMIN", "WEIGHT", "MAX RUNNING", "MAX STORAGE", "MAX QUEUED"
    );
    let or_none = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    for user in users {
        println!(
            "{:<20} {:<6} {:>6}  {:>11}  {:>11}  {:>10}",
            user.name,
            if user.admin { "yes" } else { "no" },
            user.weight,
            or_none(user.limits.max_running.map(|n| n.to_string())),
            or_none(user.limits.max_storage.map(|b| HumanBytes(b).to_string())),
            or_none(user.limits.max_queued.map(|n| n.to_string())),
        );
    }
}

pub(crate) fn print_workers(workers: &[WorkerInfo]) {
    if workers.is_empty() {
        println!("no workers connected");
        return;
    }
    println!(
        "{:>5}  {:<8} {:>7}  {:>10}  NAME",
        "ID", "KIND", "THREADS", "TASKS DONE"
    );
    for w in workers {
        println!(
            "{:>5}  {:<8} {:>7}  {:>10}  {}",
            w.id,
            w.kind.name(),
            w.threads,
            w.tasks_done,
            w.name.as_deref().unwrap_or("")
        );
    }
}

/// How long ago `then` was, at `now` (Unix ms), in its largest unit.
fn ago(then: u64, now: u64) -> String {
    let seconds = now.saturating_sub(then) / 1000;
    match seconds {
        0..60 => format!("{seconds}s ago"),
        60..3600 => format!("{}m ago", seconds / 60),
        3600..86_400 => format!("{}h ago", seconds / 3600),
        _ => format!("{}d ago", seconds / 86_400),
    }
}

pub(crate) fn print_audit(entries: &[AuditEntry], now: u64) {
    if entries.is_empty() {
        println!("no entries");
        return;
    }
    println!(
        "{:>9}  {:<16} {:<18} {:<16} DETAIL",
        "WHEN", "ACTOR", "ACTION", "SUBJECT"
    );
    for entry in entries {
        println!(
            "{:>9}  {:<16} {:<18} {:<16} {}",
            ago(entry.at, now),
            entry.actor,
            entry.action.name(),
            entry.subject,
            entry.detail
        );
    }
}

pub(crate) fn print_blobs(blobs: &[BlobListing], now: u64) {
    if blobs.is_empty() {
        println!("no blobs");
        return;
    }
    println!(
        "{:<71}  {:>10}  {:>4}  {:>9}  CREATED",
        "DIGEST", "SIZE", "JOBS", "LAST USED"
    );
    for blob in blobs {
        println!(
            "{:<71}  {:>10}  {:>4}  {:>9}  {}",
            blob.digest.to_string(),
            HumanBytes(blob.size).to_string(),
            blob.references,
            ago(blob.last_used_at, now),
            ago(blob.created_at, now),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_are_short() {
        let now = 10 * 86_400_000;
        assert_eq!(ago(now - 5_000, now), "5s ago");
        assert_eq!(ago(now - 125_000, now), "2m ago");
        assert_eq!(ago(now - 7_300_000, now), "2h ago");
        assert_eq!(ago(now - 3 * 86_400_000, now), "3d ago");
        assert_eq!(ago(now + 1_000, now), "0s ago", "a clock a little ahead");
    }
}
