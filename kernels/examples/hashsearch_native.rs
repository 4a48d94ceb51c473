//! Times `bench_wasm`'s hashsearch case natively, to say what its wasm /
//! native ratio measures: `sha2` as this binary was built (with SHA-NI when
//! the CPU has it, unless built with `RUSTFLAGS='--cfg sha2_backend="soft"'`,
//! which leaves only sha2's portable code), and the four-lane code the
//! WebAssembly worker runs (`search_four_at_a_time`), compiled natively.
//! `scripts/bench.sh` builds it both ways; `bench_wasm` runs them and folds
//! the figures into its table.
//!
//! ```text
//! hashsearch_native [--repeat N]
//! ```
//!
//! Prints one JSON object: `{"sha2_ms", "four_lane_ms", "sha_ni", "nonces"}`
//! (best of N after a warm-up; `sha_ni` says whether the CPU has SHA-NI,
//! which sha2 uses unless the portable backend was forced).

use std::time::Instant;

use grid_kernels::hashsearch;
use grid_kernels::spec::{HashsearchParams, TaskDomain};
use grid_kernels::{KernelSpec, TaskOutput, TaskRunner};

/// `bench_wasm`'s case: the first 20 of 100 tasks over 2,000,000 nonces.
const TASKS: u32 = 100;
const COUNT: u32 = 20;

fn main() {
    let repeat: usize = std::env::args()
        .skip_while(|a| a != "--repeat")
        .nth(1)
        .map_or(5, |n| n.parse().expect("--repeat takes a number"));
    let params = HashsearchParams {
        prefix: "browsergrid".into(),
        difficulty: 20,
        start: 0,
        end: 2_000_000,
    };
    let spec = KernelSpec::Hashsearch(params.clone());

    let sha2 = || {
        let mut runner = TaskRunner::new();
        let mut nonces = Vec::new();
        for index in 0..COUNT {
            match runner.run(&spec, TASKS, index) {
                Ok(TaskOutput::Nonces(found)) => nonces.extend(found),
                other => panic!("hashsearch gave {other:?}"),
            }
        }
        nonces
    };
    let four_lane = || {
        let mut nonces = Vec::new();
        for index in 0..COUNT {
            let TaskDomain::Range { start, end } = spec.task(TASKS, index) else {
                panic!("hashsearch splits into ranges");
            };
            nonces.extend(hashsearch::search_four_at_a_time(
                params.prefix.as_bytes(),
                params.difficulty,
                start,
                end,
            ));
        }
        nonces
    };
    // The case finds few nonces or none; the two searches must also agree
    // where they find many.
    let easy = (b"browsergrid".as_slice(), 6, 1_000_000, 1_010_000);
    let many = hashsearch::search_one_at_a_time(easy.0, easy.1, easy.2, easy.3);
    assert!(many.len() > 100, "difficulty 6 finds about 1 nonce in 64");
    assert_eq!(
        hashsearch::search_four_at_a_time(easy.0, easy.1, easy.2, easy.3),
        many,
        "the two searches disagree"
    );
    let expected = sha2();
    assert_eq!(four_lane(), expected, "the two searches disagree");
    let best = |f: &dyn Fn() -> Vec<u64>| {
        (0..repeat)
            .map(|_| {
                let started = Instant::now();
                assert_eq!(f(), expected);
                started.elapsed().as_secs_f64() * 1000.0
            })
            .fold(f64::MAX, f64::min)
    };
    let sha2_ms = best(&sha2);
    let four_lane_ms = best(&four_lane);
    println!(
        "{{\"sha2_ms\": {sha2_ms:.2}, \"four_lane_ms\": {four_lane_ms:.2}, \"sha_ni\": {}, \"nonces\": {}}}",
        sha_ni(),
        expected.len()
    );
}

#[cfg(target_arch = "x86_64")]
fn sha_ni() -> bool {
    std::arch::is_x86_feature_detected!("sha")
}

#[cfg(not(target_arch = "x86_64"))]
fn sha_ni() -> bool {
    false
}
