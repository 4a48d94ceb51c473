"""Benchmark 2's other side: the primes job of benchmark 1 on Dask distributed.

The same tasks as `grid submit primes --start S --end E --tasks T` (task k
counts the primes in [S + (E-S)*k//T, S + (E-S)*(k+1)//T)), submitted with
`client.map` to a LocalCluster of W single-threaded worker processes, and the
counts summed on the client. Prints one JSON object on stdout.

Also times the same per-task function serially in this process, so the
report can tell the pure-Python compute cost from Dask's scheduling overhead.

    python dask_primes.py --start 0 --end 10000000 --tasks 100000 --workers 2

Run it from a virtualenv with `dask[distributed]` installed; the Rust
benchmark (`tests/src/bin/bench.rs`) makes one under target/bench/venv.
"""

import argparse
import json
import math
import platform
import sys
import time

# The workers import this file as the module `dask_primes` (its folder is on
# their sys.path), so `count_primes` is sent by reference and the base primes
# below are computed once per worker process, not once per task.
_BASE = []
_BASE_LIMIT = 0


def _base_primes(limit):
    """Every prime <= limit, cached and grown as needed."""
    global _BASE, _BASE_LIMIT
    if limit > _BASE_LIMIT:
        limit = max(limit, 2 * _BASE_LIMIT, 1 << 12)
        sieve = bytearray(b"\x01") * (limit + 1)
        sieve[0:2] = b"\x00\x00"
        for p in range(2, math.isqrt(limit) + 1):
            if sieve[p]:
                sieve[p * p :: p] = bytes(len(range(p * p, limit + 1, p)))
        _BASE = [p for p in range(limit + 1) if sieve[p]]
        _BASE_LIMIT = limit
    return _BASE


def count_primes(bounds):
    """The number of primes p with lo <= p < hi: a sieve of the segment by
    the base primes up to sqrt(hi), with slice assignment (the simple fast
    way in pure Python)."""
    lo, hi = bounds
    if hi <= 2:
        return 0
    lo = max(lo, 2)
    if lo >= hi:
        return 0
    segment = bytearray(b"\x01") * (hi - lo)
    root = math.isqrt(hi - 1)
    for p in _base_primes(root):
        if p > root:
            break
        first = max(p * p, (lo + p - 1) // p * p)
        if first < hi:
            segment[first - lo :: p] = bytes(len(range(first, hi, p)))
    return segment.count(1)


def task_bounds(start, end, tasks):
    span = end - start
    return [
        (start + span * k // tasks, start + span * (k + 1) // tasks)
        for k in range(tasks)
    ]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--start", type=int, default=0)
    parser.add_argument("--end", type=int, default=10_000_000)
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--submit",
        type=int,
        default=None,
        help="submit only this many of the tasks (the first ones) and extrapolate",
    )
    parser.add_argument("--skip-serial", action="store_true")
    args = parser.parse_args()

    import dask
    import distributed
    from distributed import Client, LocalCluster

    import dask_primes  # this file, by module name, so workers import it too

    bounds = task_bounds(args.start, args.end, args.tasks)
    submitted = bounds if args.submit is None else bounds[: args.submit]

    serial_s = None
    serial_count = None
    if not args.skip_serial:
        dask_primes._base_primes(math.isqrt(max(args.end - 1, 1)))
        t0 = time.perf_counter()
        serial_count = sum(dask_primes.count_primes(b) for b in submitted)
        serial_s = time.perf_counter() - t0

    started = time.perf_counter()
    cluster = LocalCluster(
        n_workers=args.workers,
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        silence_logs=40,
    )
    client = Client(cluster)
    cluster_s = time.perf_counter() - started
    # Warm up: every worker imports the module and builds its base primes.
    warm = client.map(
        dask_primes.count_primes,
        [(args.end - 200 - i, args.end - i) for i in range(4 * args.workers)],
        pure=False,
    )
    client.gather(warm)
    del warm

    t0 = time.perf_counter()
    futures = client.map(dask_primes.count_primes, submitted)
    submitted_s = time.perf_counter() - t0
    count = sum(client.gather(futures))
    wall_s = time.perf_counter() - t0

    del futures
    client.close()
    cluster.close()

    n = len(submitted)
    print(
        json.dumps(
            {
                "tasks_total": args.tasks,
                "tasks_submitted": n,
                "extrapolated": n != args.tasks,
                "workers": args.workers,
                "wall_s": wall_s,
                "map_call_s": submitted_s,
                "tasks_per_s": n / wall_s,
                "count": count,
                "serial_count": serial_count,
                "serial_compute_s": serial_s,
                "cluster_start_s": cluster_s,
                "dask": dask.__version__,
                "distributed": distributed.__version__,
                "python": platform.python_version(),
            }
        )
    )
    if serial_count is not None and serial_count != count:
        print("error: Dask and the serial loop disagree", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
