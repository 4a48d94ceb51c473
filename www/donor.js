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
// The tab's blob cache lives here, on the page, so the tab's workers share
// it and never fetch one file twice: the same WebAssembly module, loaded on
// this thread, keeps it (worker-wasm/src/blob_cache.rs). A worker asks for a
// job's file with `fetch_blob`; the page answers with the checked file as a
// Blob (the one message that is not JSON), and tells every worker what the
// tab holds (`holdings`) whenever that changes, for the coordinator. The
// donor sets the cache's size (kept in localStorage) and can clear it.
//
// URL parameters: ?autostart=1 starts without the click (kiosks, tests),
// ?threads=N and ?cap=P preset the controls, ?name=... the donor name,
// ?task_limit_ms=MS stops a user's task that runs longer than that as a host
// fault (tests; by default the limit follows the task's fuel),
// ?cache_quota=BYTES sets the cache's size for this visit (tests), and
// ?cache=memory keeps files in memory only, for this visit.

const MAX_THREADS = 64;
const STOP_GRACE_MS = 5000;
const CRASH_WINDOW_MS = 60_000;
const MAX_CRASHES = 3;
const MIB = 1024 * 1024;
const QUOTA_KEY = "browsergrid.cacheQuota";

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
  // `?for=alice` (or `?for=alice,bob`, or the parameter repeated): work only
  // for these users' jobs.
  forUsers: params
    .getAll("for")
    .flatMap((names) => names.split(","))
    .map((name) => name.trim())
    .filter((name) => name !== ""),
  session: randomId(),
  taskLimitMs: params.has("task_limit_ms")
    ? clampInt(params.get("task_limit_ms"), 1, 2 ** 31 - 1)
    : null,
  /** @type {Slot[]} */
  slots: [],
  // Figures of workers already gone, so totals never go backwards.
  retired: { tasks_done: 0, compute_ms: 0, blob_failures: 0 },
  crashes: [],
  fatal: null,
};

const cache = {
  // The WebAssembly module's exports, once loaded here.
  wasm: null,
  // Settles (never rejects) once the cache is open, or could not be.
  ready: null,
  error: null,
  // Bytes; null until known (the module holds the default).
  quota: params.has("cache_quota")
    ? Math.max(0, Number.parseInt(params.get("cache_quota"), 10) || 0)
    : storedQuota(),
  memoryOnly: params.get("cache") === "memory",
  // What the workers were last told the tab holds, as JSON.
  sentHoldings: "[]",
  shownFailures: 0,
  // The last file a worker could not be given, and why.
  lastError: null,
};

function storedQuota() {
  const stored = Number.parseInt(localStorage.getItem(QUOTA_KEY) ?? "", 10);
  return Number.isFinite(stored) && stored >= 0 ? stored : null;
}

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
      // The first hello already says what the tab holds.
      cache.ready.then(() => {
        send(slot, {
          type: "start",
          url: socketUrl(),
          session: page.session,
          name: page.name.trim() || null,
          cap: page.cap,
          paused: isPaused(),
          task_limit_ms: page.taskLimitMs,
          holds: holdings(),
          for: page.forUsers,
        });
      });
      break;
    case "fetch_blob":
      answerBlob(slot, message);
      return;
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
  page.retired.blob_failures += slot.status?.blob_failures ?? 0;
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

// ---- the tab's blob cache ------------------------------------------------------

async function openCache() {
  try {
    cache.wasm = await import("./pkg/grid_worker_wasm.js");
    await cache.wasm.default();
    cache.quota ??= cache.wasm.default_cache_quota();
    await cache.wasm.open_blob_cache(cache.quota, cache.memoryOnly);
  } catch (error) {
    console.error("browsergrid: the file cache cannot open", error);
    cache.error = String(error?.message ?? error);
  }
  document.body.dataset.cache = cache.error ? "broken" : "ready";
  renderCache();
}

function holdings() {
  return cache.error || !cache.wasm ? [] : cache.wasm.blob_cache_holdings();
}

// One worker's request for a job's file: the cache shares one fetch among all
// the workers that ask for it meanwhile.
async function answerBlob(slot, request) {
  let answer;
  try {
    await cache.ready;
    if (cache.error) throw new Error(`this page's file cache is broken: ${cache.error}`);
    const data = await cache.wasm.cache_blob(request.blob, request.size, request.capability ?? undefined);
    answer = { type: "blob", blob: request.blob, data };
  } catch (error) {
    answer = { type: "blob", blob: request.blob, error: String(error?.message ?? error) };
    cache.lastError = answer.error;
  }
  if (!slot.gone) slot.worker.postMessage(answer);
  cacheChanged();
}

// After anything that may change what the tab holds: tell the workers (only
// if it changed) and redraw.
function cacheChanged() {
  const held = holdings();
  const json = JSON.stringify(held);
  if (json !== cache.sentHoldings) {
    cache.sentHoldings = json;
    for (const slot of page.slots) {
      if (!slot.stopping) send(slot, { type: "holdings", blobs: held });
    }
  }
  renderCache();
}

async function setQuota(bytes) {
  cache.quota = bytes;
  localStorage.setItem(QUOTA_KEY, String(bytes));
  await cache.ready;
  if (!cache.error) await cache.wasm.set_blob_cache_quota(bytes);
  cacheChanged();
}

async function clearCache() {
  await cache.ready;
  if (!cache.error) await cache.wasm.clear_blob_cache();
  cacheChanged();
}

function formatBytes(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  const units = ["KiB", "MiB", "GiB", "TiB"];
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
}

function blobFailures() {
  return page.retired.blob_failures + page.slots.reduce((n, s) => n + (s.status?.blob_failures ?? 0), 0);
}

function renderCache() {
  if (cache.error) {
    $("cache-persistence").textContent = `The file cache cannot open: ${cache.error}`;
    return;
  }
  if (!cache.wasm) return;
  const view = JSON.parse(cache.wasm.blob_cache_view());
  $("cache-persistence").textContent = view.persistent
    ? "Files are kept on this device (in this site's private storage) across visits."
    : `Files are not kept after this page closes: ${view.why_not}.`;
  $("cache-persistence").dataset.persistent = String(view.persistent);
  if (document.activeElement !== $("cache-quota")) {
    $("cache-quota").value = String(Math.round(view.quota / MIB));
  }
  const failures = blobFailures();
  cache.shownFailures = failures;
  const corrupt = view.corrupt_on_disk + view.corrupt_from_network;
  const check = view.last_check
    ? ` Last check: ${formatBytes(view.last_check.bytes)} hashed in ${view.last_check.ms.toFixed(0)} ms.`
    : "";
  $("cache-summary").textContent =
    `${formatBytes(view.bytes)} of ${formatBytes(view.quota)} used. ` +
    `Fetched this visit: ${formatBytes(view.fetched_bytes)} in ${view.fetches} downloads. ` +
    `Corrupt copies caught: ${corrupt} (${view.corrupt_on_disk} on disk, ` +
    `${view.corrupt_from_network} from the network); tasks failed for a file: ${failures}.` +
    check;
  Object.assign($("cache-summary").dataset, {
    fetchedBytes: String(view.fetched_bytes),
    fetches: String(view.fetches),
    corruptOnDisk: String(view.corrupt_on_disk),
    corruptFromNetwork: String(view.corrupt_from_network),
    checkMs: String(view.last_check?.ms ?? ""),
    checkBytes: String(view.last_check?.bytes ?? ""),
  });
  const rows = view.blobs.map((held) => {
    const row = $("cache-row").content.firstElementChild.cloneNode(true);
    row.dataset.blob = held.blob;
    row.querySelector(".digest").textContent = held.blob.slice(0, 19);
    row.querySelector(".digest").title = held.blob;
    row.querySelector(".size").textContent = formatBytes(held.size);
    row.querySelector(".used").textContent =
      held.used_at == null ? "–" : new Date(held.used_at).toLocaleString();
    return row;
  });
  $("cache-error").hidden = !cache.lastError;
  $("cache-error").textContent = cache.lastError ? `Last problem: ${cache.lastError}` : "";
  $("cache-list").replaceChildren(...rows);
  $("cache-held").hidden = rows.length === 0;
  $("cache-empty").hidden = rows.length > 0;
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
  // Whose job this browser computes, as the coordinator names its owner.
  $("owner").textContent = busy?.owner ?? "–";
  // A user's program: what it is called, what its submitter says it does,
  // and the digest of the exact module this browser runs.
  const program = busy?.program;
  $("program").hidden = !program;
  if (program) {
    $("program-name").textContent = program.name;
    $("program-description").textContent = program.description ?? "(no description)";
    $("program-module").textContent = program.module;
  }

  if (blobFailures() !== cache.shownFailures) renderCache();

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
  $("only-for").hidden = page.forUsers.length === 0;
  $("only-for-names").textContent = page.forUsers.join(", ");

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
  $("cache-quota").addEventListener("change", (event) => {
    const mib = Math.max(0, Number.parseInt(event.target.value, 10) || 0);
    event.target.value = String(mib);
    setQuota(mib * MIB);
  });
  $("cache-clear").addEventListener("click", () => clearCache());

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

  cache.ready = openCache();
  render();
  if (params.get("autostart") === "1") start();
}

setUp();
