#!/usr/bin/env bash
# Builds the example kernels (examples/README.md) into examples/build:
#
#   pathtracer.wasm   Rust, examples/pathtracer
#   sweep.wasm        Rust, examples/sweep
#   slicehash.wasm    Rust, examples/slicehash (reads a file of /data)
#   wordfreq.wasm     C,    examples/wordfreq/wordfreq.c
#   slicehash-c.wasm  C,    examples/slicehash/slicehash.c
#
# and prints their sizes. Safe to run again: it installs only what is missing
# (the wasm32-wasip1 Rust target; clang, lld, wasi-libc and the wasm32
# compiler runtime from Debian for the C example) and cargo rebuilds only
# what changed.
#
# Each Rust example is its own cargo project (an empty [workspace] table keeps
# it out of the browsergrid workspace) with its own Cargo.lock; they share the
# target directory examples/target. Nothing here touches the main workspace.
#
# If node is on PATH, each module's imports are checked against the WASI
# functions a grid kernel may import (examples/tools/wasi-run.mjs --imports).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

target=wasm32-wasip1
out_dir=examples/build
export CARGO_TARGET_DIR="$root/examples/target"

# Runs a command as root: directly, or through sudo.
as_root() {
    if [[ "$(id -u)" == 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null; then
        sudo "$@"
    else
        echo "error: need root to run: $*" >&2
        exit 1
    fi
}

# True if clang can compile and link a C program for WASI here.
clang_wasi_works() {
    command -v clang >/dev/null || return 1
    local tmp status=0
    tmp="$(mktemp -d)"
    printf '#include <unistd.h>\nint main(void) { return write(1, "", 0); }\n' >"$tmp/t.c"
    clang --target=wasm32-wasi -O2 -o "$tmp/t.wasm" "$tmp/t.c" >/dev/null 2>&1 || status=1
    rm -rf "$tmp"
    return "$status"
}

# --- tools -------------------------------------------------------------------

if ! rustup target list --installed | grep -qx "$target"; then
    echo "==> adding the $target target"
    rustup target add "$target"
fi

if ! clang_wasi_works; then
    echo "==> installing clang, lld, wasi-libc and the wasm32 compiler runtime (Debian packages)"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq clang lld wasi-libc
    # The compiler runtime (libclang_rt.builtins-wasm32.a) comes in a package
    # named after clang's major version: libclang-rt-14-dev-wasm32 on Debian 12.
    major="$(clang --version | sed -n 's/.*clang version \([0-9]*\).*/\1/p' | head -n 1)"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "libclang-rt-$major-dev-wasm32"
    if ! clang_wasi_works; then
        echo "error: clang still cannot build for wasm32-wasi" >&2
        exit 1
    fi
fi

# --- builds ------------------------------------------------------------------

mkdir -p "$out_dir"

# Prints "(N.N s)" since $1, a value of $EPOCHREALTIME.
elapsed() {
    awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "(%.1f s)\n", b - a }'
}

for kernel in pathtracer sweep slicehash; do
    echo "==> cargo build --release --target $target: examples/$kernel"
    start=$EPOCHREALTIME
    cargo build --release --locked --target "$target" --manifest-path "examples/$kernel/Cargo.toml"
    cp "$CARGO_TARGET_DIR/$target/release/$kernel.wasm" "$out_dir/$kernel.wasm"
    echo "    $out_dir/$kernel.wasm $(elapsed "$start")"
done

echo "==> clang --target=wasm32-wasi -O2: examples/wordfreq"
start=$EPOCHREALTIME
# --strip-debug: Debian's wasi-libc carries DWARF, three quarters of the module.
clang --target=wasm32-wasi -O2 -Wall -Wextra -Werror -Wl,--strip-debug \
    -o "$out_dir/wordfreq.wasm" examples/wordfreq/wordfreq.c
echo "    $out_dir/wordfreq.wasm $(elapsed "$start")"

echo "==> clang --target=wasm32-wasi -O2: examples/slicehash/slicehash.c"
start=$EPOCHREALTIME
clang --target=wasm32-wasi -O2 -Wall -Wextra -Werror -Wl,--strip-debug \
    -o "$out_dir/slicehash-c.wasm" examples/slicehash/slicehash.c
echo "    $out_dir/slicehash-c.wasm $(elapsed "$start")"

# --- checks and sizes --------------------------------------------------------

kernels=(pathtracer sweep slicehash wordfreq slicehash-c)

if command -v node >/dev/null; then
    echo "==> checking imports"
    for kernel in "${kernels[@]}"; do
        if ! imports="$(node examples/tools/wasi-run.mjs --imports "$out_dir/$kernel.wasm")"; then
            echo "error: $kernel.wasm imports what a grid kernel may not:" >&2
            echo "$imports" >&2
            exit 1
        fi
        echo "    $kernel.wasm: $(sed 's/^wasi_snapshot_preview1\.//; s/ (function)$//' <<<"$imports" | paste -sd ' ')"
    done
else
    echo "==> node not found: imports not checked"
fi

echo "==> sizes"
for kernel in "${kernels[@]}"; do
    printf '    %-18s %8d bytes\n' "$kernel.wasm" "$(stat -c %s "$out_dir/$kernel.wasm")"
done
