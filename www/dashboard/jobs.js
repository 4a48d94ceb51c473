// The job list: one card per job, newest first, built from the job template
// and updated in place from status objects. The snapshot lists a window of
// the jobs (the live ones, the newest finished) and counts the rest; older
// ones are loaded on demand ("Load older jobs"), and any job is found by its
// number. A hashsearch job's nonces come apart from its status, as a count,
// the smallest few, and changes (`job_nonces`). A card shows the job's state and
// progress, its rate and ETA (worked out here from the progress events), the
// pause, resume and cancel buttons while it is live, the downloads once it is
// done, and its result: a running total, a nonce list or a picture; for a
// wasm job also its first failures, its fuel per task and a gallery of its
// first outputs when they are pictures (dashboard/wasm.js).

import * as format from "./format.js";
import { ApiError } from "./api.js";
import { MandelbrotImage } from "./mandelbrot.js";
import { WasmDetails } from "./wasm.js";

// Beyond this many jobs, the oldest are not shown (`grid status` lists them).
const MAX_CARDS = 1000;
// Older jobs loaded a click.
const OLDER_PAGE = 30;
// Finished jobs shown unfolded when the page opens.
const OPEN_NEWEST = 3;
// The rate is the progress over about the last few seconds.
const RATE_WINDOW_MS = 5000;
// Nonces listed on a card (the coordinator's snapshot sends 50); the
// downloads hold them all.
const MAX_NONCES = 50;
// How long "Cancel" waits for its confirming second click.
const CONFIRM_MS = 4000;

const isLive = (status) => status.state === "queued" || status.state === "running";
const isFinished = (state) => state === "done" || state === "failed" || state === "cancelled";

/** A job id can come back after a coordinator starts over on a fresh store. */
const identity = (status) => `${status.id}:${status.created_at}`;

/** Sets an element's text only when it changes, so nothing redraws for nothing. */
function set(element, text) {
  text = String(text);
  if (element.textContent !== text) element.textContent = text;
}

function describe(status) {
  const p = status.params ?? {};
  const range = (lo, hi) => `[${format.count(lo)}, ${format.count(hi)})`;
  let text;
  switch (status.kernel) {
    case "primes":
      text = range(p.start, p.end);
      break;
    case "mandelbrot":
      text = `${p.width} × ${p.height}, ${format.count(p.max_iter)} iterations`;
      break;
    case "montecarlo-pi":
      text = `${format.count(p.samples)} samples, seed ${p.seed}`;
      break;
    case "hashsearch":
      text = `${JSON.stringify(p.prefix)}, ${p.difficulty} bits, ${range(p.start, p.end)}`;
      break;
    case "wasm":
      // argv as the program sees it, then what the submitter said it does.
      text = [p.name, ...(p.args ?? [])].join(" ");
      if (p.description) text += ` — ${p.description}`;
      text += `, up to ${format.count(p.fuel)} fuel a task`;
      break;
    default:
      text = JSON.stringify(p);
  }
  if (status.redundancy > 1) text += `, ${status.redundancy} replicas (quorum ${status.quorum})`;
  return text;
}

export class JobList {
  /**
   * @param {HTMLElement} container where the cards go
   * @param {HTMLElement} note where "no jobs" and "N older" are said
   * @param {HTMLTemplateElement} template the card
   * @param {HTMLButtonElement} older the "Load older jobs" button
   */
  constructor(container, note, template, older) {
    this.container = container;
    this.note = note;
    this.template = template;
    this.older = older;
    this.api = null;
    /** @type {Map<number, JobCard>} */
    this.cards = new Map();
    /** Jobs by state (the snapshot's `job_counts`, moved on by events). */
    this.stateCounts = {};
    /** The jobs the snapshot left out: {live, finished}. */
    this.leftOut = { live: 0, finished: 0 };
    /** The `before` of the next page of older jobs, or null. */
    this.nextBefore = null;
    this.older.addEventListener("click", () => this.loadOlder());
  }

  /** Replaces every job with a snapshot's. Cards of the same job keep their picture. */
  replace(snapshot) {
    const statuses = snapshot.jobs;
    this.stateCounts = { ...(snapshot.job_counts ?? {}) };
    this.leftOut = snapshot.jobs_left_out ?? { live: 0, finished: 0 };
    const finished = statuses.filter((s) => isFinished(s.state));
    this.nextBefore = this.leftOut.finished > 0 && finished.length > 0 ? finished.at(-1).id : null;
    // Live jobs and the few newest start unfolded; older ones are one line.
    const newest = new Set(statuses.map((s) => s.id).sort((a, b) => b - a).slice(0, OPEN_NEWEST));
    const seen = new Set();
    for (const status of statuses) {
      seen.add(status.id);
      const card = this.cards.get(status.id);
      if (card && card.key === identity(status)) {
        card.update(status, "snapshot");
      } else {
        this.cards.set(status.id, new JobCard(this, status, isLive(status) || newest.has(status.id)));
      }
    }
    for (const id of [...this.cards.keys()]) {
      if (!seen.has(id)) this.cards.delete(id);
    }
    for (const nonces of snapshot.nonces ?? []) this.nonces(nonces);
    this.layout();
  }

  /** A job event: `submitted`, `running`, `progress`, `paused`, `resumed`, `done`, ... */
  event(kind, status) {
    const card = this.cards.get(status.id);
    const known = card && card.key === identity(status);
    const before = known ? card.status.state : kind === "submitted" ? null : undefined;
    // A job the page did not know was counted by the snapshot already.
    if (before !== undefined && before !== status.state) {
      if (before) this.stateCounts[before] = Math.max(0, (this.stateCounts[before] ?? 0) - 1);
      this.stateCounts[status.state] = (this.stateCounts[status.state] ?? 0) + 1;
    }
    if (known) {
      card.update(status, kind);
      return;
    }
    this.cards.set(status.id, new JobCard(this, status, true));
    this.layout();
  }

  /** A `job_nonces` event, or an entry of the snapshot's `nonces`. */
  nonces(change) {
    this.cards.get(change.job)?.nonces(change);
  }

  /** The next page of finished jobs, older than any shown. */
  async loadOlder() {
    if (this.nextBefore == null || !this.api) return;
    this.older.disabled = true;
    try {
      const page = await this.api.olderJobs(this.nextBefore, OLDER_PAGE);
      for (const status of page.jobs) {
        if (!this.cards.has(status.id)) this.cards.set(status.id, new JobCard(this, status, false));
      }
      this.leftOut.finished = Math.max(0, this.leftOut.finished - page.jobs.length);
      this.nextBefore = page.next;
    } catch (error) {
      if (error.status !== 401) this.say(`Could not load older jobs: ${error.message}`);
    } finally {
      this.older.disabled = false;
    }
    this.layout();
  }

  /** Finds job `id` (over HTTP if the page does not hold it) and shows its card, open. */
  async find(id) {
    let card = this.cards.get(id);
    if (!card) {
      const status = await this.api.job(id);
      card = new JobCard(this, status, true);
      this.cards.set(id, card);
      this.layout();
    }
    card.root.open = true;
    card.root.scrollIntoView({ block: "nearest" });
    card.root.classList.add("found");
    setTimeout(() => card.root.classList.remove("found"), 2000);
    return card;
  }

  say(text) {
    this.note.textContent = text;
    this.note.hidden = text === "";
  }

  tile(tile) {
    this.cards.get(tile.job)?.tile(tile);
  }

  /** Once a second: elapsed time, rate and ETA move on without events. */
  tick() {
    for (const card of this.cards.values()) {
      if (card.status.state === "running") card.figures();
    }
  }

  counts() {
    const c = this.stateCounts;
    return { running: c.running ?? 0, queued: c.queued ?? 0, done: c.done ?? 0, total: this.cards.size };
  }

  layout() {
    const ordered = [...this.cards.values()].sort((a, b) => b.status.id - a.status.id);
    const shown = ordered.slice(0, MAX_CARDS).map((card) => card.root);
    const current = [...this.container.children];
    if (shown.length !== current.length || shown.some((root, i) => root !== current[i])) {
      this.container.replaceChildren(...shown);
    }
    const hidden = ordered.length - shown.length;
    const notes = [];
    if (ordered.length === 0) notes.push("No jobs yet. Submit one with `grid submit`, or POST /api/jobs.");
    if (this.leftOut.live > 0) notes.push(`${format.count(this.leftOut.live)} more live jobs are not listed; find one by its number.`);
    if (hidden > 0) notes.push(`${format.count(hidden)} older jobs are not shown; \`grid status\` lists them.`);
    if (this.leftOut.finished > 0) notes.push(`${format.count(this.leftOut.finished)} older finished jobs.`);
    this.say(notes.join(" "));
    this.older.hidden = this.nextBefore == null;
  }
}

class JobCard {
  /**
   * @param {JobList} list
   * @param {object} status
   * @param {boolean} open whether the card starts unfolded
   */
  constructor(list, status, open) {
    this.list = list;
    this.key = identity(status);
    this.root = list.template.content.firstElementChild.cloneNode(true);
    this.root.dataset.job = status.id;
    this.root.open = open;
    const $ = (selector) => this.root.querySelector(selector);
    this.el = {
      id: $(".job-id"),
      kernel: $(".kernel"),
      params: $(".params"),
      state: $(".badge.state"),
      paused: $(".badge.paused"),
      revised: $(".badge.revised"),
      owner: $(".owner"),
      progress: $(".progress"),
      bar: $(".progress .bar"),
      percent: $(".percent"),
      tasks: $(".tasks"),
      rate: $(".rate"),
      rateLabel: $(".rate-label"),
      eta: $(".eta"),
      elapsed: $(".elapsed"),
      pause: $("button.pause"),
      cancel: $("button.cancel"),
      actions: $(".actions"),
      downloads: $(".downloads"),
      png: $('.downloads [data-format="png"]'),
      message: $(".message"),
      answer: $(".answer"),
      detail: $(".answer-detail"),
      result: $(".result"),
      canvas: $("canvas.image"),
      caption: $(".image-caption"),
      nonces: $(".nonces"),
    };
    /** Progress seen lately, for the rate: {at: performance.now(), done}. */
    this.history = [];
    /**
     * A hashsearch job's nonces: how many, and the smallest ones known
     * (ascending; `complete` when they are all of them).
     */
    this.found = { count: 0, known: [], complete: true };
    const nonces = (status.result ?? status.partial)?.nonces;
    // A status fetched over HTTP carries them all; the channel's, none.
    if (status.kernel === "hashsearch" && nonces?.length > 0) {
      this.found = { count: nonces.length, known: nonces.slice(0, MAX_NONCES), complete: nonces.length <= MAX_NONCES };
    }
    this.image = null;
    this.fetching = false;
    this.wasm = status.kernel === "wasm" ? new WasmDetails($(".wasm"), () => this.list.api) : null;
    this.confirmTimer = null;

    this.el.pause.addEventListener("click", () =>
      this.act(this.status.paused ? "resume" : "pause", this.el.pause),
    );
    this.el.cancel.addEventListener("click", () => this.cancel());
    for (const button of this.el.downloads.querySelectorAll("button")) {
      button.addEventListener("click", () => this.download(button.dataset.format, button));
    }
    this.root.addEventListener("toggle", () => this.showResult());
    this.update(status, "snapshot");
  }

  update(status, kind) {
    this.status = status;
    this.receivedAt = performance.now();
    this.root.dataset.state = status.state;
    this.root.dataset.paused = status.paused;

    set(this.el.id, `#${status.id}`);
    set(this.el.kernel, status.kernel);
    set(this.el.params, describe(status));
    set(this.el.state, status.state);
    this.el.state.dataset.state = status.state;
    this.el.paused.hidden = !(status.paused && isLive(status));
    // Answers a re-check replaced after a donor was caught lying.
    const revised = status.revised ?? 0;
    set(this.el.revised, `${format.counted(revised, "answer")} revised`);
    this.el.revised.hidden = revised === 0;
    set(this.el.owner, status.owner ? `by ${status.owner}` : "");

    const { done, total } = status.tasks;
    const percent = format.percent(done, total);
    this.el.bar.style.width = `${percent}%`;
    this.el.progress.setAttribute("aria-valuenow", percent);
    set(this.el.percent, `${percent}%`);
    set(this.el.tasks, `${format.count(done)} / ${format.count(total)}`);

    // The rate counts only progress seen while the job runs unpaused.
    if (status.state !== "running" || status.paused) {
      this.history = [];
    } else {
      if (kind === "resumed") this.history = [];
      if (this.history.at(-1)?.done !== done) this.history.push({ at: this.receivedAt, done });
    }

    const live = isLive(status);
    this.el.pause.hidden = !live;
    set(this.el.pause, status.paused ? "Resume" : "Pause");
    this.el.cancel.hidden = !live;
    if (!live) this.resetConfirm();
    this.el.downloads.hidden = status.state !== "done";
    this.el.actions.hidden = !live && status.state !== "done";
    this.el.png.hidden = status.kernel !== "mandelbrot";

    this.figures();
    this.showResult();
  }

  /** Rate, ETA and elapsed time, from the last status and the clock. */
  figures() {
    const status = this.status;
    const now = performance.now();
    const running = status.state === "running";
    const elapsed = status.elapsed_ms == null ? null : status.elapsed_ms + (running ? now - this.receivedAt : 0);
    set(this.el.elapsed, format.duration(elapsed));

    const { done, total } = status.tasks;
    let rate = null;
    if (running && !status.paused) {
      while (this.history.length > 1 && now - this.history[1].at > RATE_WINDOW_MS) this.history.shift();
      const base = this.history[0];
      if (base && now - base.at >= 900) rate = (done - base.done) / ((now - base.at) / 1000);
    } else if (status.state === "done" && status.elapsed_ms > 0) {
      rate = total / (status.elapsed_ms / 1000);
    }
    set(this.el.rateLabel, status.state === "done" ? "Avg rate" : "Rate");
    set(this.el.rate, rate == null ? "–" : `${format.rate(rate)}/s`);

    let eta = "–";
    if (status.state === "done") eta = "done";
    else if (status.paused && isLive(status)) eta = "paused";
    else if (running && rate > 0) eta = format.duration(((total - done) / rate) * 1000);
    set(this.el.eta, eta);
  }

  /** The answer so far (`partial`) or the final one (`result`), by kernel. */
  showResult() {
    const status = this.status;
    const value = status.result ?? status.partial;
    const sofar = status.result ? "" : " so far";
    let answer = "";
    let detail = "";
    switch (status.kernel) {
      case "primes":
        if (value) answer = `${format.counted(value.count, "prime")}${sofar}`;
        break;
      case "montecarlo-pi":
        if (value) {
          answer = `π ≈ ${value.estimate.toFixed(6)}${sofar}`;
          detail = `${format.count(value.inside)} of ${format.count(value.samples)} samples inside the quarter circle`;
        }
        break;
      case "hashsearch":
        if (value || this.found.count > 0) {
          answer = `${format.counted(this.found.count, "nonce")} found${sofar}`;
          this.showNonces();
        }
        break;
      case "mandelbrot":
        this.showImage();
        break;
      case "wasm":
        if (value) {
          // Fuel is the grid's unit of donated compute: one a WebAssembly
          // instruction of the user's program, the same in every engine.
          answer = `${format.count(value.fuel_used)} fuel${sofar}`;
          // The first failures themselves are listed below (wasm.js).
          detail = value.tasks_failed === 0 ? "every task exited 0" : `${format.counted(value.tasks_failed, "task")} failed`;
        }
        this.wasm?.update(status, this.root.open, this.key, (text) => this.say(text));
        break;
    }
    if (status.state === "failed") {
      answer = "Failed";
      detail = status.error ?? "no reason given";
    }
    if (status.state === "cancelled") {
      detail = answer;
      answer = "Cancelled";
    }
    set(this.el.answer, answer);
    set(this.el.detail, detail);
    this.el.answer.hidden = answer === "";
    this.el.detail.hidden = detail === "";
    this.el.result.hidden = [...this.el.result.children].every((child) => child.hidden);
  }

  /** A `job_nonces` change (or a snapshot's window): `first` replaces, `added` and `removed` change. */
  nonces(change) {
    const found = this.found;
    if (change.first) {
      found.known = [...change.first];
    } else {
      const removed = new Set(change.removed ?? []);
      const largest = found.known.at(-1) ?? -1;
      let known = found.known.filter((n) => !removed.has(n));
      // While the list is only the smallest few, a larger nonce stays out of it.
      const added = (change.added ?? []).filter((n) => found.complete || n < largest);
      if (added.length > 0) known = known.concat(added).sort((a, b) => a - b);
      found.known = known.slice(0, MAX_NONCES);
    }
    found.count = change.count;
    found.complete = found.known.length === change.count;
    this.showResult();
  }

  showNonces() {
    const { count, known } = this.found;
    const list = this.el.nonces;
    list.hidden = count === 0;
    const key = `${count}:${known.join(",")}`;
    if (list.dataset.key === key) return;
    list.dataset.key = key;
    list.dataset.count = count;
    const items = known.map((nonce) => {
      const li = document.createElement("li");
      li.textContent = nonce;
      return li;
    });
    if (count > known.length) {
      const li = document.createElement("li");
      li.className = "more";
      li.textContent = `and ${format.count(count - known.length)} more (download the CSV)`;
      items.push(li);
    }
    list.replaceChildren(...items);
  }

  ensureImage() {
    if (!this.image) {
      const p = this.status.params;
      this.el.canvas.hidden = false;
      this.image = new MandelbrotImage(this.el.canvas, p);
      this.el.canvas.style.aspectRatio = `${p.width} / ${p.height}`;
      set(this.el.caption, `${p.width} × ${p.height} px, escape counts up to ${format.count(p.max_iter)}`);
      this.el.caption.hidden = false;
      this.el.result.hidden = false;
    }
    return this.image;
  }

  tile(tile) {
    if (this.status.kernel !== "mandelbrot") return;
    this.ensureImage().paintRows(tile.firstRow, tile.width, tile.counts, "tiles");
  }

  /** Running images paint themselves from tiles; a finished one seen late is fetched. */
  async showImage() {
    // A live job's canvas is there from the start, to fill in as tiles come.
    if (isLive(this.status)) this.ensureImage();
    if (this.status.state !== "done" || !this.root.open || this.fetching) return;
    if (this.image?.complete) return;
    this.fetching = true;
    const key = this.key;
    try {
      const result = await this.list.api.results(this.status.id);
      if (key === this.key) this.ensureImage().paintResult(result);
    } catch (error) {
      this.say(`Could not load the picture: ${error.message}`);
    } finally {
      this.fetching = false;
    }
  }

  async act(action, button) {
    button.disabled = true;
    this.say("");
    try {
      // The new state arrives on the monitor channel like any other change.
      await this.list.api.jobAction(this.status.id, action);
    } catch (error) {
      if (error.status !== 401) this.say(`Could not ${action} job ${this.status.id}: ${error.message}`);
    } finally {
      button.disabled = false;
    }
  }

  /** Cancelling cannot be undone, so it takes a second click. */
  cancel() {
    if (!this.confirmTimer) {
      set(this.el.cancel, "Confirm cancel");
      this.el.cancel.classList.add("confirming");
      this.confirmTimer = setTimeout(() => this.resetConfirm(), CONFIRM_MS);
      return;
    }
    this.resetConfirm();
    this.act("cancel", this.el.cancel);
  }

  resetConfirm() {
    clearTimeout(this.confirmTimer);
    this.confirmTimer = null;
    set(this.el.cancel, "Cancel");
    this.el.cancel.classList.remove("confirming");
  }

  async download(format, button) {
    button.disabled = true;
    this.say("");
    try {
      await this.list.api.download(this.status.id, format, `job-${this.status.id}-${this.status.kernel}.${format}`);
    } catch (error) {
      if (!(error instanceof ApiError && error.status === 401)) this.say(`Could not download: ${error.message}`);
    } finally {
      button.disabled = false;
    }
  }

  say(text) {
    set(this.el.message, text);
    this.el.message.hidden = text === "";
  }
}
