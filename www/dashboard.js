// The dashboard: the grid's jobs, workers and throughput, live.
//
// What the page shows live comes from the monitor channel
// (dashboard/monitor.js): a snapshot sized for any grid (a window of the
// jobs with counts of the rest, the workers summed up) replaces what the
// page knew, events change it, tiles paint Mandelbrot pictures. HTTP is for
// what a person asks for (pausing, resuming and cancelling a job,
// downloading a result, the picture of a job that finished before the page
// saw it, an open wasm job's fuel per task and first outputs, older jobs, a
// job found by its number, the full worker list) and, for a small fleet
// only, the worker list kept fresh every few seconds.
//
// The modules, one concern each:
//   dashboard/token.js      the token: #token=..., localStorage, the form
//   dashboard/api.js        authorized requests and downloads
//   dashboard/monitor.js    the socket, frame decoding, reconnecting
//   dashboard/jobs.js       job cards
//   dashboard/wasm.js       a wasm job's failures, fuel per task and gallery
//   dashboard/histogram.js  the fuel histogram
//   dashboard/images.js     which outputs are pictures (PNG, PPM), as PNGs
//   dashboard/workers.js    the workers' summary, and their list on demand
//   dashboard/chart.js      the throughput chart
//   dashboard/mandelbrot.js the PNG export's colours on a canvas
//   dashboard/format.js     numbers and durations for people

import { Api } from "./dashboard/api.js";
import { ThroughputChart } from "./dashboard/chart.js";
import * as format from "./dashboard/format.js";
import { JobList } from "./dashboard/jobs.js";
import { openMonitor } from "./dashboard/monitor.js";
import { forgetToken, storedToken, storeToken, takeTokenFromUrl } from "./dashboard/token.js";
import { WorkerList } from "./dashboard/workers.js";

const $ = (id) => document.getElementById(id);

const jobs = new JobList($("jobs"), $("jobs-note"), $("job-template"), $("older-jobs"));
const workers = new WorkerList({
  body: $("workers"),
  note: $("workers-note"),
  quarantine: $("quarantine"),
  kinds: $("worker-kinds"),
  top: $("top-donors"),
  show: $("list-workers"),
  search: $("worker-search"),
});
const chart = new ThroughputChart($("throughput"));

/** The open channel, while there is a token to use. */
let monitor = null;

function showTokenForm(error) {
  monitor?.close();
  monitor = null;
  document.body.dataset.view = "token";
  document.body.dataset.connection = "idle";
  $("grid-view").hidden = true;
  $("token-view").hidden = false;
  $("change-token").hidden = true;
  $("connection").textContent = "Not connected";
  $("token-error").textContent = error ?? "";
  $("token-error").hidden = !error;
  $("token-input").value = "";
  $("token-input").focus();
}

function refused() {
  forgetToken();
  showTokenForm("The coordinator refused this token. Check DATA/token (or the link grid serve printed) and try again.");
}

function start(token) {
  monitor?.close();
  jobs.api = new Api(token, refused);
  workers.api = jobs.api;
  document.body.dataset.view = "grid";
  $("token-view").hidden = true;
  $("grid-view").hidden = false;
  $("change-token").hidden = false;
  monitor = openMonitor(token, {
    onSnapshot(snapshot) {
      const started = performance.now();
      jobs.replace(snapshot);
      workers.replace(snapshot.workers);
      chart.replace(snapshot.throughput);
      overview();
      // For the benchmark (BENCHMARKS.md, "Dashboard at fleet size"): how
      // long a snapshot takes to apply, and when live data was first on
      // screen (a task queued from the frame's callback runs after paint).
      performance.measure("snapshot", { start: started });
      if (performance.getEntriesByName("live-data-painted").length === 0) {
        requestAnimationFrame(() => setTimeout(() => performance.mark("live-data-painted")));
      }
    },
    onEvent: handle,
    onTile: (tile) => jobs.tile(tile),
    onState: connection,
  });
}

function handle(event) {
  switch (event.type) {
    case "job":
      jobs.event(event.event, event.job);
      break;
    case "job_nonces":
      jobs.nonces(event);
      return;
    // Joins and leaves come by the hundred a second from a big, churning
    // fleet: they change the list only if it is shown, and the overview
    // takes its totals from the once-a-second summary.
    case "worker_joined":
      workers.joined(event.worker);
      return;
    case "worker_left":
      workers.left(event.worker);
      return;
    case "worker_quarantined":
      workers.quarantined(event);
      break;
    case "workers":
      workers.figures(event.workers);
      break;
    case "throughput":
      chart.push(event.sample);
      break;
    default:
      // A newer coordinator may send more; this page shows what it knows.
      return;
  }
  overviewSoon();
}

/** The overview is drawn at most ten times a second, however many events come. */
let overviewQueued = false;
function overviewSoon() {
  if (overviewQueued) return;
  overviewQueued = true;
  setTimeout(() => {
    overviewQueued = false;
    overview();
  }, 100);
}

/** Sets an element's text only when it changes, so nothing redraws for nothing. */
function show(id, text) {
  const element = $(id);
  if (element.textContent !== text) element.textContent = text;
}

function overview() {
  const totals = workers.totals();
  const counts = jobs.counts();
  show("done-count", format.count(counts.done));
  show("tasks-per-s", format.rate(chart.latest?.tasks_per_s ?? 0));
  show("worker-count", format.count(totals.connections));
  show("donor-count", format.count(totals.donors));
  show("thread-count", format.count(totals.threads));
  show("running-count", format.count(counts.running));
  show("queued-count", format.count(counts.queued));
}

function connection(state, detail = {}) {
  if (state === "refused") {
    refused();
    return;
  }
  document.body.dataset.connection = state;
  const text = {
    connecting: "Connecting…",
    live: "Live",
    reconnecting: detail.delay
      ? `Connection lost; reconnecting in ${Math.ceil(detail.delay / 1000)} s (attempt ${detail.attempt})`
      : `Reconnecting (attempt ${detail.attempt})…`,
  }[state];
  $("connection").textContent = text;
}

$("token-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const token = $("token-input").value.trim();
  if (!token) return;
  storeToken(token);
  start(token);
});

// Search by job: its card, fetched if the page does not hold it.
$("find-job").addEventListener("submit", async (event) => {
  event.preventDefault();
  const id = Number($("job-search").value.trim().replace(/^#/, ""));
  $("find-error").hidden = true;
  if (!Number.isSafeInteger(id) || id < 0 || !jobs.api) return;
  try {
    await jobs.find(id);
  } catch (error) {
    $("find-error").textContent = error.status === 404 ? `No job #${id}.` : `Could not find job #${id}: ${error.message}`;
    $("find-error").hidden = false;
  }
});

$("change-token").addEventListener("click", () => {
  forgetToken();
  showTokenForm();
});

// Elapsed times, rates and ETAs move on between events. This timer only
// re-reads the clock; it asks the coordinator nothing.
setInterval(() => jobs.tick(), 1000);

// A dashboard link pasted into the address bar of this page changes only the
// fragment, which reloads nothing.
window.addEventListener("hashchange", () => {
  const token = takeTokenFromUrl();
  if (token) start(token);
});

const token = takeTokenFromUrl() ?? storedToken();
if (token) start(token);
else showTokenForm();
