//! The `slicehash` example as a test workload: a job mounts one file as
//! `data.bin`, each task reads a slice of it (`data.bin OFFSET LEN` on
//! stdin) and prints the slice's SHA-256, which [`expected`] computes here,
//! independently of the kernel. Shared by the end-to-end tests of files
//! (native and browser) and the data benchmarks.

use std::collections::BTreeMap;
use std::path::PathBuf;

use grid_cli::client::Client;
use grid_kernels::ContentDigest;
use grid_kernels::wasm::WasmInputs;
use grid_protocol::api::{JobRequest, WasmRequest};

use crate::browser::repo_root;

/// The built kernel, or a failure that says how to build it.
pub fn slicehash() -> Vec<u8> {
    let path: PathBuf = repo_root().join("examples/build/slicehash.wasm");
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{} is missing ({e}): run `make examples` (make test does)",
            path.display()
        )
    })
}

/// Deterministic bytes that are not all alike (xorshift).
pub fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// One slice a task, `(offset, length)`, spread over the whole file (the
/// last ones may run past its end, which reads what is there); `salt`
/// makes another job's slices.
pub fn slices(len: usize, tasks: usize, salt: usize) -> Vec<(usize, usize)> {
    (0..tasks)
        .map(|i| {
            let offset = ((i + salt) * 7919 * 131 + i * len / tasks) % len;
            (offset, 1 + ((i + salt) * 104_729) % 50_000)
        })
        .collect()
}

/// What slicehash prints for each slice.
pub fn expected(file: &[u8], slices: &[(usize, usize)]) -> Vec<String> {
    slices
        .iter()
        .map(|&(offset, length)| {
            let end = (offset + length).min(file.len());
            format!("{}\n", ContentDigest::of(&file[offset..end]).hex())
        })
        .collect()
}

/// Submits a slicehash job over `file`, mounted as `data.bin`, each task
/// computed by `redundancy` workers that must all agree.
pub async fn submit(
    client: &Client,
    file: ContentDigest,
    slices: &[(usize, usize)],
    redundancy: u32,
) -> u64 {
    let (module, _) = client.ensure_blob(slicehash()).await.unwrap();
    let lines: String = slices
        .iter()
        .map(|(offset, length)| format!("data.bin {offset} {length}\n"))
        .collect();
    let (lines, _) = client.ensure_blob(lines.into_bytes()).await.unwrap();
    let mut request = WasmRequest::new(module);
    request.name = Some("slicehash.wasm".into());
    request.inputs = Some(WasmInputs::Lines(lines));
    request.files = BTreeMap::from([("data.bin".to_string(), file)]);
    client
        .submit(&JobRequest {
            redundancy: Some(redundancy),
            quorum: Some(redundancy),
            ..JobRequest::new(request)
        })
        .await
        .expect("the job is accepted")
        .id
}
