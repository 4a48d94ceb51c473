#!/usr/bin/env bash
# Profiles the coordinator over several runs of benchmark 1's job: a
# coordinator and two `grid worker --threads 1` on a loopback port, `perf
# record` (CPU clock, DWARF call graphs) attached to the coordinator, then N
# primes jobs of 100,000 tasks one after another. More samples than the
# bench binary's single profiled job (`--perf DIR`).
#
#   tests/bench/profile.sh [OUT.perf.data] [JOBS]
#   perf report -i OUT.perf.data --no-children --sort symbol -g none
#   perf report -i OUT.perf.data --children --sort symbol -g none
#
# Needs perf (Debian: linux-perf). Hardware counters are not needed: the
# CPU-clock software event works in virtual machines too.
set -euo pipefail
cd "$(dirname "$0")/../.."

out=${1:-target/bench/perf/jobs.perf.data}
jobs=${2:-8}
grid=target/release/grid
[[ -x $grid ]] || cargo build --release -p grid-cli --bin grid
mkdir -p "$(dirname "$out")" target/bench/scratch
data=$(mktemp -d -p target/bench/scratch profile-XXXX)
port=$((20000 + RANDOM % 20000))
url=http://127.0.0.1:$port

pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$data"
}
trap cleanup EXIT

"$grid" serve --addr "127.0.0.1:$port" --data "$data/data" --token bench 2>"$data/serve.log" &
server=$!
pids+=("$server")
for _ in $(seq 1 100); do
    curl -sf "$url/api/health" >/dev/null && break
    sleep 0.05
done
for i in 1 2; do
    "$grid" --url "$url" worker --threads 1 --name "profile-$i" 2>"$data/worker-$i.log" &
    pids+=("$!")
done
sleep 1

perf record -q -e cpu-clock -F 1999 --call-graph dwarf,16384 -p "$server" -o "$out" 2>/dev/null &
perf_pid=$!
sleep 0.5
for _ in $(seq 1 "$jobs"); do
    "$grid" --url "$url" --token bench submit primes --start 0 --end 10000000 \
        --tasks 100000 --wait --json | grep '"elapsed_ms"'
done
kill -INT "$perf_pid"
wait "$perf_pid" || true
echo "profile: $out"
