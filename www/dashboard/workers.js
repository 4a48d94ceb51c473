// The worker list: every connection the coordinator has. A browser tab has
// one connection per Web Worker, all with the tab's `session`, so a session's
// connections appear under one group row with their sums. (Not grouped by
// `donor`: the coordinator may count a whole remote address as one donor,
// and the list is about tabs and machines, not about replica placement.)

import * as format from "./format.js";

// Beyond this many groups the list stops growing; the overview still counts all.
const MAX_GROUPS = 200;

export class WorkerList {
  /**
   * @param {HTMLTableSectionElement} body the table's tbody
   * @param {HTMLElement} note where "N more" and "no workers" are said
   * @param {HTMLElement} quarantine the box listing quarantined donors
   */
  constructor(body, note, quarantine) {
    this.body = body;
    this.note = note;
    this.quarantine = quarantine;
    /** @type {Map<number, object>} worker id -> list entry plus `rate` */
    this.workers = new Map();
  }

  replace(entries) {
    this.workers = new Map(entries.map((w) => [w.id, { rate: 0, ...w }]));
    this.render();
  }

  joined(entry) {
    this.workers.set(entry.id, { rate: 0, ...entry });
    this.render();
  }

  left(id) {
    this.workers.delete(id);
    this.render();
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
    this.render();
  }

  /** The once-a-second figures: tasks_done, fuel_used, tasks_in_flight, rate, paused. */
  figures(list) {
    for (const figures of list) {
      const worker = this.workers.get(figures.id);
      if (worker) Object.assign(worker, figures);
    }
    this.render();
  }

  totals() {
    let threads = 0;
    const donors = new Set();
    for (const w of this.workers.values()) {
      threads += w.threads;
      donors.add(w.donor);
    }
    return { connections: this.workers.size, donors: donors.size, threads };
  }

  groups() {
    const bySession = new Map();
    for (const w of this.workers.values()) {
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
    const groups = this.groups();
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
    const hidden = groups.length - MAX_GROUPS;
    this.note.textContent =
      groups.length === 0
        ? "No workers are connected. Open the donor page in a browser, or run `grid worker`."
        : hidden > 0
          ? `${format.count(hidden)} more workers or tabs are not listed.`
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
