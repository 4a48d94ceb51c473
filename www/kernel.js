// The kernel thread of one browsergrid worker thread: a dedicated module Web
// Worker that worker.js's WebAssembly worker starts inside itself to run
// users' kernels, one task at a time, off the thread that serves the socket.
// It loads the same WebAssembly module and hands over to it; the messages it
// answers are worker-wasm/src/kernel_thread.rs. A failure to load or an
// uncaught error is passed to the session, which replaces this thread.

import init, { run_kernel_thread } from "./pkg/grid_worker_wasm.js";

let reported = false;
function crashed(error) {
  if (reported) return;
  reported = true;
  self.postMessage({ type: "crashed", error: String(error) });
}

self.addEventListener("error", (event) => crashed(event.message || "the kernel thread failed"));
self.addEventListener("unhandledrejection", (event) => crashed(event.reason));

try {
  await init();
  run_kernel_thread();
} catch (error) {
  crashed(`cannot load the kernel thread: ${error}`);
}
