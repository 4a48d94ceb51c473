//! The end-to-end suite as one test binary: a real coordinator on loopback
//! sockets with a real SQLite file, native, hand-written and browser workers,
//! the `grid` command line as a child process. One binary links warp,
//! chromiumoxide and the coordinator once instead of once a file; each module
//! is a group that says in its header what it proves, and a group runs alone
//! with `cargo test -p grid-tests --test e2e -- faults::`.
//!
//! The tests share one process. Nothing they rely on is process-wide but
//! what is meant to be: logging is set up once (`init_logging` tolerates a
//! second call), Chromium and `www/pkg` are checked once, every coordinator
//! has its own port and data directory, and child processes get their
//! environment explicitly (`grid_cli_with` clears `GRID_URL`, `GRID_TOKEN`,
//! `RUST_LOG`; the `grid-under-test` binary is found beside this one). A
//! browser test has the machine to itself, as it had in a binary of its own:
//! it waits until no other test's coordinator runs and holds new ones back
//! ([`grid_tests::browser::exclusive`]).

mod bad_frames;
mod bad_input;
mod blobs;
mod browser;
mod browser_files;
mod browser_wasm;
mod cli;
mod dashboard;
mod dashboard_drill;
mod disk_full;
mod donor_for;
mod donors;
mod examples;
mod fair_share;
mod faults;
mod files;
mod hostile;
mod jobs;
mod limits;
mod monitor;
mod outputs;
mod protocol;
mod silent_coordinator;
mod smoke;
mod startup;
mod tls;
mod users;
mod wasm;
mod web;
