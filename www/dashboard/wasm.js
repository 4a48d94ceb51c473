// What a wasm job's card shows beyond its total fuel: the first failed
// tasks with their trap or exit code and stderr (from the status object),
// and once the job is done and its card open, the fuel per task (minimum,
// median, maximum and a histogram, from GET /api/jobs/{id}/fuel, a few
// hundred bytes whatever the job's size) and a gallery of its first outputs
// when they are pictures (from GET /api/jobs/{id}/outputs/{task}). Both are
// asked for once a card, never on progress events.

import * as format from "./format.js";
import { Histogram } from "./histogram.js";
import { readPicture } from "./images.js";

// The gallery shows at most this many outputs, from the first tasks on; it
// stops at the first output that is not a picture.
const GALLERY_SIZE = 6;
// How much of a failed task's stderr the list shows.
const STDERR_SHOWN = 300;

export class WasmDetails {
  /**
   * @param {HTMLElement} root the card's `.wasm` section
   * @param {() => import("./api.js").Api} api
   */
  constructor(root, api) {
    this.api = api;
    const $ = (selector) => root.querySelector(selector);
    this.el = {
      root,
      failures: $(".failures"),
      fuel: $(".fuel"),
      min: $(".fuel .min"),
      median: $(".fuel .median"),
      max: $(".fuel .max"),
      gallery: $(".gallery"),
      thumbs: $(".gallery .thumbs"),
      caption: $(".gallery .gallery-caption"),
    };
    this.histogram = new Histogram($(".fuel canvas"));
    /** The job (id:created_at) whose figures and gallery were asked for. */
    this.loaded = null;
    this.urls = [];
  }

  /**
   * @param {object} status the job's status
   * @param {boolean} open whether its card is unfolded
   * @param {string} key the job's identity
   * @param {(text: string) => void} say shows a problem on the card
   */
  update(status, open, key, say) {
    const value = status.result ?? status.partial;
    this.showFailures(status.id, value);
    if (status.state === "done" && open && this.loaded !== key) {
      this.loaded = key;
      this.loadFuel(status.id, key, say);
      this.loadGallery(status, key, say);
    }
    this.el.root.hidden = this.el.failures.hidden && this.el.fuel.hidden && this.el.gallery.hidden;
  }

  showFailures(id, value) {
    const list = this.el.failures;
    const failures = value?.failures ?? [];
    list.hidden = failures.length === 0;
    const signature = JSON.stringify([value?.tasks_failed, failures]);
    if (list.dataset.shown === signature) return;
    list.dataset.shown = signature;
    const items = failures.map((failure) => {
      const li = document.createElement("li");
      const what = document.createElement("span");
      what.className = "what";
      what.textContent =
        `task ${failure.task}: ` + (failure.trap ? `trap ${failure.trap}` : `exit code ${failure.exit_code}`);
      li.append(what);
      if (failure.stderr) {
        const stderr = document.createElement("pre");
        stderr.className = "stderr";
        const text = failure.stderr.trimEnd();
        stderr.textContent = text.length > STDERR_SHOWN ? `${text.slice(0, STDERR_SHOWN)}…` : text;
        li.append(stderr);
      }
      return li;
    });
    const more = (value?.tasks_failed ?? 0) - failures.length;
    if (more > 0) {
      const li = document.createElement("li");
      li.className = "more";
      li.textContent = `and ${format.counted(more, "more failed task")} (grid results ${id} -o DIR lists them all)`;
      items.push(li);
    }
    list.replaceChildren(...items);
  }

  async loadFuel(id, key, say) {
    try {
      const fuel = await this.api().fuel(id);
      if (this.loaded !== key || fuel.tasks === 0) return;
      this.el.min.textContent = format.count(fuel.min);
      this.el.median.textContent = format.count(fuel.median);
      this.el.max.textContent = format.count(fuel.max);
      this.el.fuel.hidden = false;
      this.el.root.hidden = false;
      this.histogram.show(fuel.min, fuel.max, fuel.bins);
    } catch (error) {
      if (error.status !== 401) say(`Could not load the fuel per task: ${error.message}`);
    }
  }

  /** The first outputs, one after the other, while they are pictures. */
  async loadGallery(status, key, say) {
    for (const url of this.urls) URL.revokeObjectURL(url);
    this.urls = [];
    this.el.thumbs.replaceChildren();
    const failed = new Set((status.result?.failures ?? []).map((f) => f.task));
    const tasks = [];
    for (let task = 0; task < status.tasks.total && tasks.length < GALLERY_SIZE; task++) {
      if (!failed.has(task)) tasks.push(task);
    }
    try {
      for (const task of tasks) {
        const picture = await readPicture(await this.api().output(status.id, task));
        if (this.loaded !== key || !picture) break;
        this.addThumb(task, picture);
      }
    } catch (error) {
      if (error.status !== 401) say(`Could not load the outputs: ${error.message}`);
    }
    const shown = this.el.thumbs.children.length;
    if (shown > 0 && this.loaded === key) {
      this.el.caption.textContent =
        shown < status.tasks.total
          ? `The first ${format.counted(shown, "output")} of ${format.count(status.tasks.total)}; grid results ${status.id} -o DIR has them all.`
          : `Every output (${format.count(shown)}).`;
    }
  }

  addThumb(task, blob) {
    const url = URL.createObjectURL(blob);
    this.urls.push(url);
    const link = Object.assign(document.createElement("a"), {
      href: url,
      target: "_blank",
      rel: "noopener",
      title: `Task ${task}'s output, full size`,
    });
    const img = Object.assign(document.createElement("img"), { src: url, alt: `task ${task}`, decoding: "async" });
    img.dataset.task = task;
    const label = document.createElement("span");
    label.textContent = `task ${task}`;
    link.append(img, label);
    const li = document.createElement("li");
    li.append(link);
    this.el.thumbs.append(li);
    this.el.gallery.hidden = false;
    this.el.root.hidden = false;
  }
}
