#!/usr/bin/env node
// Runs a WASI preview 1 kernel under Node's `node:wasi`, roughly as a grid
// worker would, to try the examples without a grid:
//
//   node examples/tools/wasi-run.mjs [--seed N] [--imports] MODULE.wasm [ARGS...] < input
//
// - argv is the module's file name, then ARGS; the environment is empty and
//   no directories are preopened (the grid preopens /data; run that with
//   `grid run --file`); stdin, stdout and stderr are this
//   process's.
// - Every import must be one of the WASI functions the grid offers (the list
//   below), else this refuses the module as the grid's submission would.
//   `--imports` prints the imports and stops.
// - `random_get` and `clock_time_get` are replaced by deterministic stand-ins
//   so that two runs give the same bytes: random bytes from SplitMix64 keyed
//   by `--seed` (0 by default), a clock that starts at 2026-01-01 and ticks
//   1 microsecond per read. The grid's own stream is ChaCha8 keyed per task,
//   so the *bytes* drawn here differ from a grid worker's; only the
//   determinism is the same.
// - There is no fuel, stack, memory or output limit here: that is what the
//   grid adds (see `grid run` for the real thing).
//
// Exits with the kernel's exit code, or 134 if it trapped.

import { readFileSync } from 'node:fs';
import { basename } from 'node:path';

// The imports a kernel may have (the brief's contract; every one is in
// module wasi_snapshot_preview1).
const ALLOWED = new Set([
  'args_get', 'args_sizes_get', 'environ_get', 'environ_sizes_get',
  'fd_read', 'fd_write', 'fd_close', 'fd_fdstat_get',
  'fd_prestat_get', 'fd_prestat_dir_name',
  'fd_seek', 'clock_res_get', 'clock_time_get', 'random_get', 'sched_yield', 'proc_exit',
  // The files of /data (protocol 3).
  'path_open', 'path_filestat_get', 'fd_filestat_get', 'fd_readdir', 'fd_pread', 'fd_tell',
  'fd_advise', 'fd_fdstat_set_flags',
]);

function usage() {
  console.error('usage: wasi-run.mjs [--seed N] [--imports] MODULE.wasm [ARGS...] < input');
  process.exit(2);
}

const argv = process.argv.slice(2);
let seed = 0n;
let listOnly = false;
while (argv.length > 0 && argv[0].startsWith('--')) {
  const flag = argv.shift();
  if (flag === '--seed' && argv.length > 0) seed = BigInt(argv.shift());
  else if (flag === '--imports') listOnly = true;
  else usage();
}
if (argv.length === 0) usage();
const [path, ...args] = argv;

const module = new WebAssembly.Module(readFileSync(path));
const imports = WebAssembly.Module.imports(module);
const refused = imports.filter(
  (i) => i.module !== 'wasi_snapshot_preview1' || i.kind !== 'function' || !ALLOWED.has(i.name),
);
if (listOnly) {
  for (const i of imports) {
    console.log(`${i.module}.${i.name} (${i.kind})${refused.includes(i) ? '  <- NOT ALLOWED' : ''}`);
  }
  process.exit(refused.length === 0 ? 0 : 1);
}
if (refused.length > 0) {
  console.error(`wasi-run: refused: imports ${refused.map((i) => `${i.module}.${i.name}`).join(', ')}`);
  process.exit(3);
}

// node:wasi is marked experimental; its warning would only clutter stderr.
process.removeAllListeners('warning');
const { WASI } = await import('node:wasi');
const wasi = new WASI({ version: 'preview1', args: [basename(path), ...args], env: {}, returnOnExit: true });
const wasiImport = { ...wasi.wasiImport };
let instance;
const view = () => new DataView(instance.exports.memory.buffer);

// SplitMix64, keyed by --seed: deterministic random_get.
let state = seed;
const MASK = (1n << 64n) - 1n;
function nextU64() {
  state = (state + 0x9e3779b97f4a7c15n) & MASK;
  let z = state;
  z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & MASK;
  z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & MASK;
  return z ^ (z >> 31n);
}
wasiImport.random_get = (ptr, len) => {
  const bytes = new Uint8Array(instance.exports.memory.buffer, ptr, len);
  for (let i = 0; i < len; i += 8) {
    let word = nextU64();
    for (let j = i; j < Math.min(i + 8, len); j++, word >>= 8n) bytes[j] = Number(word & 0xffn);
  }
  return 0;
};

// A clock that starts at 2026-01-01T00:00:00Z and ticks 1 us per read.
let now = 1_767_225_600n * 1_000_000_000n;
wasiImport.clock_time_get = (_id, _precision, ptr) => {
  view().setBigUint64(ptr, now, true);
  now += 1000n;
  return 0;
};

instance = new WebAssembly.Instance(module, { wasi_snapshot_preview1: wasiImport });
let code;
try {
  code = wasi.start(instance);
} catch (e) {
  console.error(`wasi-run: trap: ${e.message}`);
  code = 134;
}
process.exitCode = code;
