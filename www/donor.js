// The donor page: consent, controls, and the Web Workers that compute.
//
// Each thread is one dedicated module Web Worker (worker.js) running the Rust
// worker compiled to WebAssembly, with its own connection to the coordinator
// (and, for users' kernels, a kernel thread of its own nested in it: kernel.js).
// All of a tab's workers share one donor session id. This file only starts
// and stops them, relays the donor's controls as commands, and adds up the
// figures they report. Messages both ways are JSON text; the Rust side is
// worker-wasm/src/page.rs.
//
// URL parameters: ?autostart=1 starts without the click (kiosks, tests),
// ?threads=N and ?cap=P preset the controls, ?name=... the donor name,
// ?task_limit_ms=MS stops a user's task that runs longer than that as a host
// fault (tests; by default the limit follows the task's fuel).

const MAX_THREADS = 64;
const STOP_GRACE_MS = 5000;
const CRASH_WINDOW_MS = 60_000;
const MAX_CRASHES = 3;

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);

const page = {
  started: false,
  donorPaused: false,
  hidden: document.visibilityState === "hidden",
  // The pause the workers were last told about.
  sentPaused: false,
  threads: clampInt(params.get("threads") ?? navigator.hardwareConcurrency ?? 2, 1, MAX_THREADS),
  cap: clampInt(params.get("cap") ?? 100, 10, 100),
  name: params.get("name") ?? localStorage.getItem("browsergrid.name") ?? "",
  session: randomId(),
  taskLimitMs: params.has("task_limit_ms")
    ? clampInt(params.get("task_limit_ms"), 1, 2 ** 31 - 1)
    : null,
  /** @type {Slot[]} */
  slots: [],
  // Figures of workers already gone, so totals never go backwards.
  retired: { tasks_done: 0, compute_ms: 0 },
  crashes: [],
  fatal: null,
};

/**
 * @typedef {{ worker: Worker, status: object | null, stopping: boolean, gone: boolean }} Slot
 */

function clampInt(value, min, max) {
  const n = Number.parseInt(value, 10);
  return Number.isFinite(n) ? Math.min(max, Math.max(min, n)) : min;
}

// One random id per tab. crypto.getRandomValues works on plain http too,
// unlike crypto.randomUUID.
function randomId() {
  const bytes = crypto.getRandomValues(new Uint8Array(12));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function socketUrl() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}/ws/worker`;
}

const isPaused = () => page.donorPaused || page.hidden;

// ---- workers -------------------------------------------------------------------

function send(slot, command) {
  if (!slot.gone) slot.worker.postMessage(JSON.stringify(command));
}

function spawn() {
  const worker = new Worker(new URL("./worker.js", import.meta.url), { type: "module" });
  /** @type {Slot} */
  const slot = { worker, status: null, stopping: false, gone: false };
  worker.onmessage = (event) => onWorkerMessage(slot, JSON.parse(event.data));
  worker.onerror = (event) => {
    event.preventDefault();
    crashed(slot, event.message || "the worker failed to start");
  };
  page.slots.push(slot);
}

function onWorkerMessage(slot, message) {
  switch (message.type) {
    case "ready":
      send(slot, {
        type: "start",
        url: socketUrl(),
        session: page.session,
        name: page.name.trim() || null,
        cap: page.cap,
        paused: isPaused(),
        task_limit_ms: page.taskLimitMs,
      });
      break;
    case "status":
      slot.status = message;
      break;
    case "stopped":
      retire(slot);
      break;
    case "crashed":
      crashed(slot, message.error);
      break;
    default:
      console.error("browsergrid: unknown message from a worker", message);
  }
  render();
}

function retire(slot) {
  if (slot.gone) return;
  slot.gone = true;
  slot.worker.terminate();
  page.retired.tasks_done += slot.status?.tasks_done ?? 0;
  page.retired.compute_ms += slot.status?.compute_ms ?? 0;
  page.slots = page.slots.filter((s) => s !== slot);
  render();
}

// A crashed worker has already told the coordinator which task failed and
// handed back the rest; replace it, unless workers keep crashing.
function crashed(slot, error) {
  if (slot.gone) return;
  console.error(`browsergrid: a worker crashed: ${error}`);
  retire(slot);
  const now = Date.now();
  page.crashes = page.crashes.filter((t) => now - t < CRASH_WINDOW_MS).concat(now);
  if (page.crashes.length > MAX_CRASHES) {
    page.fatal = `Workers keep crashing (${error}). Reload the page to try again.`;
    stopAll();
    page.started = false;
  } else if (page.started) {
    setTimeout(fitThreads, 1000);
  }
  render();
}

function stopSlot(slot) {
  if (slot.stopping) return;
  slot.stopping = true;
  send(slot, { type: "stop" });
  setTimeout(() => retire(slot), STOP_GRACE_MS);
}

function stopAll() {
  page.slots.forEach(stopSlot);
}

// Brings the number of live workers to the chosen thread count.
function fitThreads() {
  if (!page.started) return;
  const live = page.slots.filter((s) => !s.stopping);
  for (let i = live.length; i < page.threads; i++) spawn();
  live.slice(page.threads).forEach(stopSlot);
  render();
}

function applyPause() {
  const paused = isPaused();
  if (paused === page.sentPaused) return;
  page.sentPaused = paused;
  for (const slot of page.slots) {
    if (!slot.stopping) send(slot, { type: paused ? "pause" : "resume" });
  }
  render();
}

function start() {
  if (page.started) return;
  page.started = true;
  page.fatal = null;
  page.crashes = [];
  page.sentPaused = isPaused();
  fitThreads();
}

function stop() {
  page.started = false;
  page.donorPaused = false;
  stopAll();
  render();
}

// ---- figures -------------------------------------------------------------------

function formatDuration(ms) {
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(s < 10 ? 1 : 0)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${String(Math.floor(s % 60)).padStart(2, "0")} s`;
  return `${Math.floor(m / 60)} h ${String(m % 60).padStart(2, "0")} min`;
}

function overallState(statuses) {
  if (page.fatal) return ["refused", page.fatal];
  if (!page.started) return page.slots.length ? ["stopping", "Stopping…"] : ["idle", "Not started"];
  const has = (state) => statuses.some((s) => s.state === state);
  const refused = statuses.find((s) => s.state === "refused");
  if (refused) return ["refused", `Refused by the coordinator: ${refused.error}`];
  if (has("working")) return ["working", "Working"];
  if (has("paused")) {
    return ["paused", page.donorPaused ? "Paused" : "Paused while this tab is hidden"];
  }
  const retrying = statuses.find((s) => s.state === "reconnecting");
  if (retrying) return ["reconnecting", `Reconnecting… (${retrying.error ?? "connection lost"})`];
  return ["connecting", "Connecting…"];
}

function render() {
  const statuses = page.slots.filter((s) => !s.stopping && s.status).map((s) => s.status);
  const all = page.slots.map((s) => s.status).filter(Boolean);
  const sum = (key) => all.reduce((total, s) => total + (s[key] ?? 0), 0);
  const [state, text] = overallState(statuses);
  document.body.dataset.state = state;
  $("status").textContent = text;
  $("connected-workers").textContent = String(
    statuses.filter((s) => s.state === "working" || s.state === "paused").length,
  );
  $("tasks-done").textContent = String(page.retired.tasks_done + sum("tasks_done"));
  const rate = sum("rate");
  $("rate").textContent = rate >= 100 ? rate.toFixed(0) : rate.toFixed(1);
  const computeMs = page.retired.compute_ms + sum("compute_ms");
  $("compute-time").textContent = formatDuration(computeMs);
  $("compute-time").dataset.ms = computeMs.toFixed(0);
  const busy = statuses.find((s) => s.job != null);
  $("job").textContent = busy ? `#${busy.job}` : "–";
  $("kernel").textContent = busy ? busy.kernel : "–";
  // A user's program: what it is called, what its submitter says it does,
  // and the digest of the exact module this browser runs.
  const program = busy?.program;
  $("program").hidden = !program;
  if (program) {
    $("program-name").textContent = program.name;
    $("program-description").textContent = program.description ?? "(no description)";
    $("program-module").textContent = program.module;
  }

  $("start").textContent = page.started ? "Stop" : "Start";
  $("pause").disabled = !page.started;
  $("pause").textContent = page.donorPaused ? "Resume" : "Pause";
  $("cap-value").textContent = `${page.cap}%`;
}

// ---- controls ------------------------------------------------------------------

function setUp() {
  $("coordinator").textContent = location.origin;
  $("session").textContent = page.session;
  $("threads").value = String(page.threads);
  $("threads").max = String(MAX_THREADS);
  $("cap").value = String(page.cap);
  $("donor-name").value = page.name;

  $("start").addEventListener("click", () => (page.started ? stop() : start()));
  $("pause").addEventListener("click", () => {
    page.donorPaused = !page.donorPaused;
    applyPause();
    render();
  });
  $("threads").addEventListener("change", (event) => {
    page.threads = clampInt(event.target.value, 1, MAX_THREADS);
    event.target.value = String(page.threads);
    fitThreads();
  });
  $("cap").addEventListener("input", (event) => {
    page.cap = clampInt(event.target.value, 10, 100);
    for (const slot of page.slots) send(slot, { type: "cap", percent: page.cap });
    render();
  });
  $("donor-name").addEventListener("change", (event) => {
    page.name = event.target.value.trim();
    localStorage.setItem("browsergrid.name", page.name);
  });

  // A hidden tab may be frozen or discarded at any moment: send what is
  // finished, hand back the rest, and take no new work until it is visible.
  document.addEventListener("visibilitychange", () => {
    page.hidden = document.visibilityState === "hidden";
    applyPause();
  });
  // Closing (or leaving) the tab: each worker sends its finished results,
  // hands back unstarted tasks and closes its connection, if the browser lets
  // it run that long; the coordinator re-issues whatever is left either way.
  window.addEventListener("pagehide", () => stopAll());
  window.addEventListener("pageshow", (event) => {
    if (event.persisted && page.started) fitThreads();
  });

  render();
  if (params.get("autostart") === "1") start();
}

setUp();
