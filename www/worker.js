// One browsergrid worker thread: a dedicated module Web Worker that loads the
// WebAssembly worker and hands over to it. The protocol loop, the kernels and
// the pacing are all Rust (worker-wasm); this file only loads them and
// reports a failure to load or a crash to the page, which replaces the worker.
// Users' kernels run on a kernel thread the Rust side starts inside this one
// (kernel.js); its errors are handled there and never reach this file.

import init, { run } from "./pkg/grid_worker_wasm.js";

let reported = false;
function crashed(error) {
  if (reported) return;
  reported = true;
  self.postMessage(JSON.stringify({ type: "crashed", error: String(error) }));
}

// After a Rust panic the module traps; the panic hook has already told the
// coordinator and the page what happened, and this makes sure the page knows.
self.addEventListener("error", (event) => crashed(event.message || "the worker failed"));
self.addEventListener("unhandledrejection", (event) => crashed(event.reason));

try {
  await init();
  run();
} catch (error) {
  crashed(`cannot load the worker: ${error}`);
}
