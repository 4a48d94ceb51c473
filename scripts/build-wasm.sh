#!/usr/bin/env bash
# Builds the browser worker: worker-wasm compiled for wasm32-unknown-unknown
# and bound with wasm-bindgen (--target web) into www/pkg, which the
# coordinator serves with the donor page.
#
# wasm-bindgen-cli must be exactly the wasm-bindgen version in Cargo.lock (the
# generated glue and the crate's runtime must agree); it is installed into
# .tools/ when the one on PATH is missing or another version.
#
# Environment:
#   WASM_OPT=1   also run wasm-opt -O3 from the npm package `binaryen` (never
#                Debian's binaryen: its wasm-opt 108 breaks wasm-bindgen output).
#                Off by default: measured with bench_wasm in Chromium 156 it
#                made no kernel measurably faster; it shrinks the module by a
#                quarter (421 KB to 310 KB), which does not pay for an npm
#                download in every build.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

target=wasm32-unknown-unknown
out_dir=www/pkg
tools="$root/.tools"

if ! rustup target list --installed | grep -qx "$target"; then
    echo "==> adding the $target target"
    rustup target add "$target"
fi

# The version of the `wasm-bindgen` package in Cargo.lock.
version="$(awk '
    $0 == "name = \"wasm-bindgen\"" { found = 1; next }
    found && /^version = / { gsub(/"/, "", $3); print $3; exit }
' Cargo.lock)"
if [[ -z "$version" ]]; then
    echo "error: no wasm-bindgen package in Cargo.lock" >&2
    exit 1
fi

export PATH="$tools/bin:$PATH"
installed="$(wasm-bindgen --version 2>/dev/null | awk '{ print $2 }' || true)"
if [[ "$installed" != "$version" ]]; then
    echo "==> installing wasm-bindgen-cli $version into .tools (found: ${installed:-none})"
    # Not --locked: the CLI's own lock file does not build on this toolchain.
    cargo install wasm-bindgen-cli --version "=$version" --root "$tools"
fi

echo "==> building grid-worker-wasm for $target"
cargo build -p grid-worker-wasm --release --target "$target"

wasm="target/$target/release/grid_worker_wasm.wasm"
echo "==> wasm-bindgen --target web --out-dir $out_dir"
rm -rf "$out_dir"
wasm-bindgen --target web --no-typescript --out-dir "$out_dir" "$wasm"

if [[ "${WASM_OPT:-0}" == 1 ]]; then
    if [[ ! -x node_modules/.bin/wasm-opt ]]; then
        echo "==> installing wasm-opt from the npm package binaryen"
        npm install --no-save --no-package-lock binaryen
    fi
    echo "==> wasm-opt -O3"
    node_modules/.bin/wasm-opt -O3 --enable-bulk-memory --enable-nontrapping-float-to-int \
        --enable-sign-ext --enable-mutable-globals --enable-reference-types --enable-multivalue \
        "$out_dir/grid_worker_wasm_bg.wasm" -o "$out_dir/grid_worker_wasm_bg.wasm"
fi

ls -l "$out_dir"
