//! The example kernels' workloads that the benchmarks time (benchmark 7's
//! instrumentation rows on wasmtime and in node, and `bench_wasm`'s in
//! Chromium): one run of each, its argv and stdin, the same everywhere.

/// One run of a kernel: its argv and stdin.
pub struct Workload {
    pub example: &'static str,
    pub what: &'static str,
    pub args: &'static [&'static str],
    pub stdin: Vec<u8>,
}

pub fn workloads() -> Vec<Workload> {
    // About a megabyte of text for the word counter: the repository's
    // protocol description, repeated.
    let protocol =
        std::fs::read(grid_tests::browser::repo_root().join("PROTOCOL.md")).unwrap_or_default();
    let text: Vec<u8> = protocol.iter().copied().cycle().take(1 << 20).collect();
    vec![
        Workload {
            example: "pathtracer",
            what: "path tracer, 320x240, 16 samples (f64 arithmetic)",
            args: &["--width", "320", "--height", "240", "--samples", "16"],
            stdin: Vec::new(),
        },
        Workload {
            example: "sweep",
            what: "parameter sweep, 27 oscillators x 20,000 RK4 steps",
            args: &["--steps", "20000"],
            stdin: std::fs::read(
                grid_tests::browser::repo_root().join("examples/sweep/params.txt"),
            )
            .unwrap_or_default(),
        },
        Workload {
            example: "wordfreq",
            what: "word count of 1 MiB of text (C, wasi-libc)",
            args: &[],
            stdin: text,
        },
    ]
}
