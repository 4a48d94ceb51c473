//! What the benchmark knows about the machine and the processes on it: the
//! machine's description for the report, the load average before each run,
//! a process's resident memory and CPU time from `/proc`, the file-descriptor
//! limit, and the median and spread of a set of runs.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use serde::Serialize;

/// The repository's root folder (this package lives in `tests/`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ lives in the repository")
        .to_path_buf()
}

/// Where the benchmark keeps its results, virtualenv and scratch data.
pub fn bench_dir() -> PathBuf {
    repo_root().join("target").join("bench")
}

/// The machine, as the report describes it.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub ram_gib: f64,
    pub kernel: String,
    pub rustc: String,
    pub commit: String,
    /// Uncommitted changes under the crates being measured, if any.
    pub dirty: bool,
}

impl Machine {
    pub fn describe() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_else(|| "unknown".into());
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let ram_kib = meminfo_kib("MemTotal").unwrap_or(0);
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "unknown".into());
        let rustc = output_of("rustc", &["--version"]).unwrap_or_else(|| "unknown".into());
        let root = repo_root();
        let root = root.to_string_lossy();
        let commit = output_of("git", &["-C", &root, "rev-parse", "--short=12", "HEAD"])
            .unwrap_or_else(|| "unknown".into());
        let dirty = output_of(
            "git",
            &[
                "-C",
                &root,
                "status",
                "--porcelain",
                "--",
                "coordinator",
                "scheduler",
                "protocol",
                "kernels",
            ],
        )
        .is_some_and(|s| !s.is_empty());
        Machine {
            cpu,
            cores,
            ram_gib: ram_kib as f64 / (1024.0 * 1024.0),
            kernel,
            rustc,
            commit,
            dirty,
        }
    }
}

fn meminfo_kib(key: &str) -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    meminfo
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

fn output_of(program: &str, args: &[&str]) -> Option<String> {
    let output = Command::new(program).args(args).output().ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_string())
}

/// The one-minute load average: how busy the machine was before a run.
pub fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

/// A process's resident set size, KiB (`VmRSS` in `/proc/PID/status`).
pub fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("read /proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .context("no VmRSS line")
}

/// CPU time a process has used so far (user + system), seconds.
pub fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("read /proc/{pid}/stat"))?;
    // The command name (field 2) may hold spaces; fields resume after ')'.
    let rest = stat.rsplit_once(')').context("malformed stat")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 here.
    let ticks: u64 = fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
    Ok(ticks as f64 / clock_ticks_per_second())
}

fn clock_ticks_per_second() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        output_of("getconf", &["CLK_TCK"])
            .and_then(|s| s.parse().ok())
            .unwrap_or(100.0)
    })
}

/// The soft open-files limit of a process, from `/proc/PID/limits`.
pub fn nofile_limit(pid: u32) -> Option<u64> {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3)?.parse().ok())
}

/// Raises this process's RLIMIT_NOFILE to `wanted` (soft and hard; root may
/// raise the hard limit) or, failing that, its soft limit to its hard limit.
/// Child processes inherit it. Uses util-linux `prlimit`, which keeps this
/// crate free of `unsafe`. Returns the soft limit now in force.
pub fn raise_nofile(wanted: u64) -> anyhow::Result<u64> {
    let pid = std::process::id();
    let current = nofile_limit(pid).unwrap_or(0);
    if current >= wanted {
        return Ok(current);
    }
    let pid_arg = pid.to_string();
    let both = format!("--nofile={wanted}:{wanted}");
    let ok = Command::new("prlimit")
        .args(["--pid", &pid_arg, &both])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        // Not root: the soft limit can still go up to the hard one.
        let hard = std::fs::read_to_string(format!("/proc/{pid}/limits"))
            .ok()
            .and_then(|l| {
                l.lines()
                    .find(|l| l.starts_with("Max open files"))
                    .and_then(|l| l.split_whitespace().nth(4)?.parse::<u64>().ok())
            })
            .unwrap_or(current);
        let soft = format!("--nofile={hard}:");
        let _ = Command::new("prlimit")
            .args(["--pid", &pid_arg, &soft])
            .status();
    }
    let now = nofile_limit(pid).unwrap_or(current);
    if now < wanted {
        bail!("the open-files limit is {now}, below the {wanted} wanted (prlimit failed)");
    }
    Ok(now)
}

/// The median and spread of a set of runs.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Stat {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub runs: usize,
}

impl Stat {
    pub fn of(values: &[f64]) -> Option<Stat> {
        let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
        if sorted.is_empty() {
            return None;
        }
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let median = if n % 2 == 1 {
            sorted[n / 2]
        } else {
            (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
        };
        Some(Stat {
            median,
            min: sorted[0],
            max: sorted[n - 1],
            runs: n,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_of_odd_and_even_runs() {
        let s = Stat::of(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!((s.median, s.min, s.max, s.runs), (2.0, 1.0, 3.0, 3));
        assert_eq!(Stat::of(&[4.0, 1.0, 2.0, 3.0]).unwrap().median, 2.5);
        assert!(Stat::of(&[]).is_none());
    }

    #[test]
    fn this_process_has_memory_and_cpu_time() {
        let pid = std::process::id();
        assert!(rss_kib(pid).unwrap() > 0);
        assert!(cpu_seconds(pid).unwrap() >= 0.0);
        assert!(nofile_limit(pid).unwrap() > 0);
    }
}
