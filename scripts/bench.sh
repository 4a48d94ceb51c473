#!/usr/bin/env bash
# `make bench`: builds the release binaries, then runs the benchmarks of
# issue 6 (tests/src/bin/bench.rs, which also runs the browser engineer's
# tests/src/bin/bench_wasm.rs for the wasm-vs-native rows) and prints one
# markdown table. They report figures against goals; they never fail on
# speed. Raw numbers go to target/bench/results.json.
#
# Arguments are passed to the bench binary, e.g.
#   scripts/bench.sh --only throughput,latency --runs 3
#   scripts/bench.sh --only fair_share           # benchmark 9: a newcomer's job beside a huge one
#   scripts/bench.sh --only fleet,churn          # 10 and 11: 1,000-20,000 active connections (loadgen), churn
#   scripts/bench.sh --perf target/bench/perf     # also profile the coordinator
#
# Needs python3 with venv (for the Dask comparison: a throwaway virtualenv
# under target/bench/venv) and Chromium (scripts/install-chromium.sh) for the
# wasm rows; without them those rows say why they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --locked -p grid-cli --bin grid
cargo build --release --locked -p grid-tests --bin bench --bin bench_wasm --bin loadgen --bin bench_dashboard
# Benchmark 6's hashsearch rows without SHA-NI: sha2's portable backend,
# forced by a cfg, in a target directory of its own (the kernels crate
# alone, about 45 s the first time).
RUSTFLAGS='--cfg sha2_backend="soft"' CARGO_TARGET_DIR=target/sha2-soft \
    cargo build --release --locked -p grid-kernels --example hashsearch_native
# The Rust example kernels built for this machine too: benchmark 7 compares
# them with the same source as prepared WebAssembly.
for example in pathtracer sweep; do
    cargo build --release --locked --manifest-path "examples/$example/Cargo.toml" \
        --target-dir examples/target
done

# 10,000 idle connections need as many descriptors on each side; the bench
# raises its own limit as far as it may, and the coordinator inherits it.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

target/release/bench --grid target/release/grid "$@"

# A full run (no arguments) ends with the dashboard at fleet size: headless
# Chromium watching 9,000 churning connections (9,000, not 20,000: this
# process holds both ends of each, under a 20,000 open-files limit);
# "Dashboard at fleet size" in BENCHMARKS.md.
if [ "$#" -eq 0 ]; then
    echo "== dashboard at fleet size"
    target/release/bench_dashboard --workers 9000 --churn 450 --window 30 ||
        echo "the dashboard benchmark did not finish (it needs Chromium: scripts/install-chromium.sh)"
fi
