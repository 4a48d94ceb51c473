// The job API with the bearer token: job actions, a job's status, pages of
// older jobs, the worker list, result downloads, a wasm job's fuel per task
// and task outputs, and a token check. Every request goes through `request`, which turns a refusal
// (401) into a call to `onRefused` and any other error into an ApiError with
// the coordinator's own sentence.

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

export class Api {
  /**
   * @param {string} token
   * @param {() => void} onRefused called when the coordinator refuses the token
   */
  constructor(token, onRefused) {
    this.token = token;
    this.onRefused = onRefused;
  }

  async request(method, path) {
    let response;
    try {
      response = await fetch(path, {
        method,
        headers: { Authorization: `Bearer ${this.token}` },
        cache: "no-store",
      });
    } catch {
      throw new ApiError(0, "the coordinator cannot be reached");
    }
    if (response.status === 401) {
      this.onRefused();
      throw new ApiError(401, "the coordinator refused the token");
    }
    if (!response.ok) {
      let message = `${response.status} ${response.statusText}`;
      try {
        message = (await response.json()).error ?? message;
      } catch {
        // Not JSON: keep the status line.
      }
      throw new ApiError(response.status, message);
    }
    return response;
  }

  /** POST /api/jobs/{id}/{action} with action cancel, pause or resume. */
  async jobAction(id, action) {
    return (await this.request("POST", `api/jobs/${id}/${action}`)).json();
  }

  /** One job's status object (GET /api/jobs/{id}). */
  async job(id) {
    return (await this.request("GET", `api/jobs/${id}`)).json();
  }

  /**
   * Up to `limit` finished jobs older than job `before`, newest first, and
   * the `before` of the next page (null at the end): GET /api/jobs with
   * limit, before and state. (A coordinator that does not page answers
   * every job; those are picked here.)
   */
  async olderJobs(before, limit) {
    const response = await this.request(
      "GET",
      `api/jobs?limit=${limit}&before=${before}&state=done,failed,cancelled`,
    );
    const header = response.headers.get("x-next-before");
    const finished = new Set(["done", "failed", "cancelled"]);
    const jobs = (await response.json())
      .filter((job) => job.id < before && finished.has(job.state))
      .sort((a, b) => b.id - a.id);
    const page = jobs.slice(0, limit);
    const next = header != null ? Number(header) : jobs.length > limit ? page.at(-1).id : null;
    return { jobs: page, next };
  }

  /** Every worker connection, `page` at a time (GET /api/workers?limit&after). */
  async workers(page) {
    const all = [];
    let after = null;
    for (;;) {
      const query = after == null ? `limit=${page}` : `limit=${page}&after=${after}`;
      const response = await this.request("GET", `api/workers?${query}`);
      all.push(...(await response.json()));
      const next = response.headers.get("x-next-after");
      if (next == null || next === String(after)) return all;
      after = next;
    }
  }

  /** A done job's result; for mandelbrot {width, height, max_iter, iterations}. */
  async results(id) {
    return (await this.request("GET", `api/jobs/${id}/results?format=json`)).json();
  }

  /** A wasm job's fuel per task in brief: {tasks, total, min, median, max, bin_width, bins}. */
  async fuel(id) {
    return (await this.request("GET", `api/jobs/${id}/fuel`)).json();
  }

  /** What a wasm job's task wrote to stdout: the response, to read as far as needed. */
  async output(id, task) {
    return this.request("GET", `api/jobs/${id}/outputs/${task}`);
  }

  /** Saves a done job's result as a file (json, csv or png). */
  async download(id, format, fallbackName) {
    const response = await this.request("GET", `api/jobs/${id}/results?format=${format}`);
    const disposition = response.headers.get("Content-Disposition") ?? "";
    const name = /filename="([^"]+)"/.exec(disposition)?.[1] ?? fallbackName;
    const url = URL.createObjectURL(await response.blob());
    const link = Object.assign(document.createElement("a"), { href: url, download: name });
    document.body.append(link);
    link.click();
    link.remove();
    // Give the browser a moment to start the download before letting go.
    setTimeout(() => URL.revokeObjectURL(url), 60_000);
  }
}

/**
 * Whether the coordinator accepts a token: "ok", "refused", or "unreachable".
 * Used when the monitor socket fails to open, because a browser hides the
 * HTTP status of a refused WebSocket upgrade.
 */
export async function checkToken(token) {
  try {
    const response = await fetch("api/workers", {
      headers: { Authorization: `Bearer ${token}` },
      cache: "no-store",
    });
    if (response.status === 401) return "refused";
    return response.ok ? "ok" : "unreachable";
  } catch {
    return "unreachable";
  }
}
