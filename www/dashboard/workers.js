// The workers: a summary first (totals, by kind, the donors doing the most),
// which the monitor channel keeps current whatever the fleet's size; then
// the list of every connection, fetched over HTTP (`GET /api/workers`, page
// by page) at once for a small fleet and on demand for a big one, and
// searchable by donor, name, address or id. A browser tab has one
// connection per Web Worker, all with the tab's `session`, so a session's
// connections appear under one group row with their sums. (Not grouped by
// `donor`: the coordinator may count a whole remote address as one donor,
// and the list is about tabs and machines, not about replica placement.)

import * as format from "./format.js";

// Beyond this many groups the list stops growing; the summary counts all.
const MAX_GROUPS = 200;
// Up to this many connections the list is shown without asking, and kept
// fresh every few seconds.
const AUTO_LIST = 200;
const REFRESH_MS = 2000;
// Connections fetched a request.
const PAGE = 1000;

export class WorkerList {
  /**
   * @param {object} el the elements: body (the table's tbody), note, quarantine,
   *   kinds, top (the top donors' tbody), show (the button), search (the input)
   */
  constructor(el) {
    Object.assign(this, el);
    this.api = null;
    /** @type {Map<number, object>} worker id -> list entry plus `rate` */
    this.workers = new Map();
    /** The last summary (WorkerSummary in PROTOCOL.md). */
    this.summary = null;
    /** Whether the full list is on the page; asked for, or a small fleet. */
    this.listed = false;
    this.asked = false;
    this.fetchedAt = 0;
    this.fetching = false;
    this.show.addEventListener("click", () => {
      this.asked = !this.asked || !this.listed;
      if (this.asked) this.fetch();
      else this.hide();
    });
    this.search.addEventListener("input", () => {
      if (this.search.value.trim() && !this.listed) {
        this.asked = true;
        this.fetch();
      }
      this.render();
    });
  }

  /** A snapshot's or a `workers` event's summary. */
  replace(summary) {
    this.figures(summary);
  }

  figures(summary) {
    this.summary = summary;
    this.renderSummary();
    const small = summary.connections <= AUTO_LIST;
    const wanted = this.asked || small;
    if (!wanted) {
      if (this.listed) this.hide();
    } else if (!this.listed || (small && performance.now() - this.fetchedAt >= REFRESH_MS)) {
      this.fetch();
    }
    this.renderButton();
  }

  /** Every connection, page by page; rates from the change since the last fetch. */
  async fetch() {
    if (this.fetching || !this.api) return;
    this.fetching = true;
    try {
      const list = await this.api.workers(PAGE);
      const now = performance.now();
      const seconds = (now - this.fetchedAt) / 1000;
      const next = new Map();
      for (const w of list) {
        const before = this.workers.get(w.id);
        const rate = before && seconds > 0 ? Math.max(0, (w.tasks_done - before.tasks_done) / seconds) : (before?.rate ?? 0);
        next.set(w.id, { ...w, rate, quarantined: w.quarantined || before?.quarantined || false });
      }
      this.workers = next;
      this.fetchedAt = now;
      this.listed = true;
    } catch (error) {
      this.note.textContent = `Could not list the workers: ${error.message}`;
      this.note.hidden = false;
      return;
    } finally {
      this.fetching = false;
    }
    this.render();
  }

  hide() {
    this.listed = false;
    this.workers = new Map();
    this.render();
  }

  joined(entry) {
    if (!this.listed) return;
    this.workers.set(entry.id, { rate: 0, ...entry });
    this.renderSoon();
  }

  left(id) {
    if (!this.listed) return;
    if (this.workers.delete(id)) this.renderSoon();
  }

  /** Draws the list within a quarter of a second, once however many changes come. */
  renderSoon() {
    if (this.renderQueued) return;
    this.renderQueued = true;
    setTimeout(() => {
      this.renderQueued = false;
      this.render();
    }, 250);
  }

  /**
   * A donor was caught sending wrong results: its connections are marked
   * (until they leave, which the coordinator makes them do at once) and the
   * donor is listed below the table, with who it was and why.
   */
  quarantined(event) {
    const names = [];
    for (const id of event.workers) {
      const worker = this.workers.get(id);
      if (worker) Object.assign(worker, { quarantined: true, trusted: false });
      names.push(worker?.name ? `${worker.name} (#${id})` : `worker #${id}`);
    }
    const item = document.createElement("li");
    item.dataset.donor = event.donor;
    item.dataset.workers = event.workers.join(" ");
    const who = document.createElement("strong");
    who.textContent = names.length > 0 ? names.join(", ") : `donor ${event.donor}`;
    const why = document.createElement("span");
    const redone = event.reopened_tasks > 0
      ? ` ${format.count(event.reopened_tasks)} tasks it decided alone are computed again.`
      : "";
    why.textContent = `: ${event.reason}.${redone}`;
    item.append(who, why);
    this.quarantine.querySelector("ul").prepend(item);
    this.quarantine.hidden = false;
    this.renderSoon();
  }

  totals() {
    const s = this.summary;
    return s
      ? { connections: s.connections, donors: s.donors, threads: s.threads, rate: s.rate }
      : { connections: 0, donors: 0, threads: 0, rate: 0 };
  }

  renderSummary() {
    const s = this.summary;
    const kinds = s.by_kind.map(
      (k) => `${format.count(k.connections)} ${k.kind} (${format.count(k.threads)} threads, ${format.rate(k.rate)} tasks/s)`,
    );
    const extra = [];
    if (s.paused > 0) extra.push(`${format.count(s.paused)} paused`);
    if (s.trusted_donors > 0) extra.push(`${format.counted(s.trusted_donors, "trusted donor")}`);
    extra.push(`${format.count(s.tasks_in_flight)} tasks in flight`);
    this.kinds.textContent = s.connections === 0 ? "" : `${kinds.join(" · ")}. ${extra.join(", ")}.`;
    const rows = s.top_donors.map((d) => {
      const tr = document.createElement("tr");
      tr.dataset.donor = d.donor;
      const badges = [badge(d.kind, d.kind)];
      if (d.quarantined) badges.push(badge("quarantined", "quarantined"));
      else if (d.trusted) badges.push(badge("trusted", "trusted"));
      const td = document.createElement("td");
      td.className = "name";
      const title = document.createElement("span");
      title.className = "title";
      title.textContent = d.name ?? `donor ${d.donor}`;
      const small = document.createElement("small");
      small.textContent = `${format.counted(d.connections, "connection")}`;
      td.append(title, ...badges, small);
      tr.append(
        td,
        cell(format.count(d.threads), "num"),
        cell(format.count(d.tasks_done), "num"),
        cell(format.rate(d.rate), "num"),
      );
      return tr;
    });
    this.top.replaceChildren(...rows);
    this.top.closest("table").hidden = rows.length === 0;
  }

  renderButton() {
    const n = this.summary?.connections ?? 0;
    this.show.hidden = n <= AUTO_LIST;
    this.show.textContent = this.listed ? "Hide the list" : `List all ${format.count(n)} connections`;
  }

  /** The connections the search names: by donor, name, session, address or #id. */
  matching() {
    const query = this.search.value.trim().toLowerCase();
    const all = [...this.workers.values()];
    if (!query) return all;
    const id = query.startsWith("#") ? query.slice(1) : query;
    return all.filter(
      (w) =>
        String(w.donor) === id ||
        String(w.id) === id ||
        (w.name ?? "").toLowerCase().includes(query) ||
        (w.session ?? "").toLowerCase().startsWith(query) ||
        (w.addr ?? "").includes(query),
    );
  }

  groups(workers) {
    const bySession = new Map();
    for (const w of workers) {
      const key = w.session == null ? `connection ${w.id}` : `session ${w.session}`;
      const group = bySession.get(key);
      if (group) group.push(w);
      else bySession.set(key, [w]);
    }
    return [...bySession.values()]
      .map((members) => members.sort((a, b) => a.id - b.id))
      .sort((a, b) => a[0].id - b[0].id);
  }

  render() {
    this.renderButton();
    const groups = this.listed ? this.groups(this.matching()) : [];
    const rows = [];
    for (const members of groups.slice(0, MAX_GROUPS)) {
      if (members.length === 1) {
        rows.push(row(members[0], "worker"));
        continue;
      }
      rows.push(groupRow(members));
      const paused = members.every((w) => w.paused);
      for (const member of members) rows.push(row(member, "member", paused));
    }
    this.body.replaceChildren(...rows);
    this.body.closest("table").hidden = !this.listed;
    const hidden = groups.length - MAX_GROUPS;
    const connections = this.summary?.connections ?? 0;
    this.note.textContent =
      connections === 0 && this.workers.size === 0
        ? "No workers are connected. Open the donor page in a browser, or run `grid worker`."
        : this.listed && this.search.value.trim() && groups.length === 0
          ? "No connection matches."
          : hidden > 0
            ? `${format.count(hidden)} more workers or tabs are not listed; search to narrow the list.`
            : "";
    this.note.hidden = this.note.textContent === "";
  }
}

function cell(text, className) {
  const td = document.createElement("td");
  td.textContent = text;
  if (className) td.className = className;
  return td;
}

function badge(text, kind) {
  const span = document.createElement("span");
  span.className = `badge ${kind}`;
  span.textContent = text;
  return span;
}

function nameCell(title, subtitle, badges, connectedAt) {
  const td = document.createElement("td");
  td.className = "name";
  const strong = document.createElement("span");
  strong.className = "title";
  strong.textContent = title;
  const small = document.createElement("small");
  small.textContent = subtitle;
  // Shown instead of the "Since" column when the table is narrow.
  const since = document.createElement("span");
  since.className = "since-inline";
  since.textContent = `${subtitle ? " · " : ""}since ${format.clock(connectedAt)}`;
  small.append(since);
  td.append(strong, ...badges, small);
  return td;
}

function since(connectedAt) {
  const td = cell(format.clock(connectedAt), "since");
  td.title = `connected ${format.fullDate(connectedAt)}`;
  return td;
}

/** One connection: a native worker, or one thread of a tab under its group row. */
function row(w, kind, groupPaused = false) {
  const tr = document.createElement("tr");
  tr.className = kind;
  tr.dataset.worker = w.id;
  const title = kind === "member" ? `worker #${w.id}` : (w.name ?? `worker #${w.id}`);
  const subtitle = kind === "member" ? (w.addr ?? "") : `#${w.id}${w.addr ? ` · ${w.addr}` : ""}`;
  const badges = [badge(w.kind, w.kind)];
  // Under a group row that already says "paused", members need not repeat it.
  if (w.paused && !groupPaused) badges.push(badge("paused", "paused"));
  if (w.quarantined) badges.push(badge("quarantined", "quarantined"));
  else if (w.trusted) badges.push(badge("trusted", "trusted"));
  tr.append(
    nameCell(title, subtitle, kind === "member" ? badges.slice(1) : badges, w.connected_at),
    cell(format.count(w.threads), "num"),
    cell(format.count(w.tasks_done), "num"),
    cell(format.count(w.fuel_used ?? 0), "num fuel"),
    cell(format.rate(w.rate), "num"),
    cell(format.count(w.tasks_in_flight), "num in-flight"),
    since(w.connected_at),
  );
  return tr;
}

/** A session with several connections: a browser tab and its Web Workers. */
function groupRow(members) {
  const first = members[0];
  const sum = (field) => members.reduce((total, w) => total + (w[field] ?? 0), 0);
  const tr = document.createElement("tr");
  tr.className = "group";
  tr.dataset.session = first.session;
  tr.dataset.connections = members.length;
  const what = first.kind === "browser" ? "browser tab" : "session";
  const badges = [badge(first.kind, first.kind)];
  if (members.every((w) => w.paused)) badges.push(badge("paused", "paused"));
  if (members.some((w) => w.quarantined)) badges.push(badge("quarantined", "quarantined"));
  const connectedAt = Math.min(...members.map((w) => w.connected_at));
  tr.append(
    nameCell(
      first.name ?? `${what} ${first.session.slice(0, 8)}`,
      `${what} · ${members.length} connections`,
      badges,
      connectedAt,
    ),
    cell(format.count(sum("threads")), "num"),
    cell(format.count(sum("tasks_done")), "num"),
    cell(format.count(sum("fuel_used")), "num fuel"),
    cell(format.rate(sum("rate")), "num"),
    cell(format.count(sum("tasks_in_flight")), "num in-flight"),
    since(connectedAt),
  );
  return tr;
}
