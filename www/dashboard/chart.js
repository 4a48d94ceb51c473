// The throughput chart: tasks per second over the last minutes, drawn on a
// canvas by hand. One series, one axis and a few labels are about eighty
// lines; a charting library (uPlot is the smallest good one, ~50 KB) would
// bring more code to vendor and keep up to date than it would save here.

// The chart spans the history it has, from one minute up to five.
const MIN_WINDOW_MS = 60_000;
const MAX_WINDOW_MS = 5 * 60_000;
const KEEP_MS = MAX_WINDOW_MS;

/** The smallest of 1, 2, 5 x 10^k that is at least `value`. */
function niceCeiling(value) {
  if (!(value > 0)) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 5, 10]) {
    if (step * power >= value) return step * power;
  }
  return 10 * power;
}

/**
 * Sizes `canvas` to its CSS box at the device's pixel ratio and clears it;
 * returns its 2D context (in CSS pixels), its size and the chart colours
 * from the stylesheet, or null while it has no size. Every chart of the
 * dashboard draws on one of these.
 */
export function clearCanvas(canvas) {
  const ratio = window.devicePixelRatio || 1;
  const cssWidth = canvas.clientWidth;
  const cssHeight = canvas.clientHeight;
  if (!cssWidth || !cssHeight) return null;
  canvas.width = Math.round(cssWidth * ratio);
  canvas.height = Math.round(cssHeight * ratio);
  const g = canvas.getContext("2d");
  g.setTransform(ratio, 0, 0, ratio, 0, 0);
  g.clearRect(0, 0, cssWidth, cssHeight);
  const style = getComputedStyle(canvas);
  const colour = (name, fallback) => style.getPropertyValue(name).trim() || fallback;
  g.font = `11px ${style.fontFamily}`;
  return {
    g,
    cssWidth,
    cssHeight,
    colors: {
      line: colour("--chart-line", "#2f6fed"),
      fill: colour("--chart-fill", "rgba(47,111,237,0.15)"),
      grid: colour("--chart-grid", "#dde1e8"),
      text: colour("--chart-text", "#5d6678"),
    },
  };
}

export class ThroughputChart {
  /** @param {HTMLCanvasElement} canvas */
  constructor(canvas) {
    this.canvas = canvas;
    /** @type {{t: number, tasks_per_s: number, workers: number, threads: number}[]} */
    this.samples = [];
    new ResizeObserver(() => this.draw()).observe(canvas);
  }

  /** Replaces every sample (from a snapshot). */
  replace(samples) {
    this.samples = samples.slice();
    this.draw();
  }

  push(sample) {
    this.samples.push(sample);
    const oldest = sample.t - KEEP_MS;
    while (this.samples.length && this.samples[0].t < oldest) this.samples.shift();
    this.draw();
  }

  get latest() {
    return this.samples.at(-1) ?? null;
  }

  draw() {
    const surface = clearCanvas(this.canvas);
    if (!surface) return;
    const { g, cssWidth, cssHeight, colors: { line, fill, grid, text } } = surface;

    const end = this.latest?.t ?? Date.now();
    const span = Math.min(MAX_WINDOW_MS, Math.max(MIN_WINDOW_MS, end - (this.samples[0]?.t ?? end)));
    const start = end - span;
    const shown = this.samples.filter((s) => s.t >= start);
    this.canvas.dataset.samples = shown.length;
    const top = niceCeiling(Math.max(...shown.map((s) => s.tasks_per_s), 0) * 1.1);

    const left = 4;
    const right = cssWidth - 4;
    const plotTop = 14;
    const bottom = cssHeight - 18;
    const x = (t) => left + ((t - start) / span) * (right - left);
    const y = (v) => bottom - (v / top) * (bottom - plotTop);

    // Grid lines at 0, half and the top, labelled inside the plot.
    g.strokeStyle = grid;
    g.fillStyle = text;
    g.lineWidth = 1;
    g.textBaseline = "bottom";
    for (const v of [0, top / 2, top]) {
      const at = Math.round(y(v)) + 0.5;
      g.beginPath();
      g.moveTo(left, at);
      g.lineTo(right, at);
      g.stroke();
      if (v > 0) g.fillText(v.toLocaleString(), left + 2, at - 2);
    }
    g.textBaseline = "top";
    g.textAlign = "left";
    g.fillText(span < 120_000 ? `${Math.round(span / 1000)} s ago` : `${Math.round(span / 60_000)} min ago`, left, bottom + 4);
    g.textAlign = "right";
    g.fillText("now", right, bottom + 4);

    if (shown.length < 2) return;
    g.beginPath();
    shown.forEach((s, i) => (i ? g.lineTo(x(s.t), y(s.tasks_per_s)) : g.moveTo(x(s.t), y(s.tasks_per_s))));
    g.strokeStyle = line;
    g.lineWidth = 1.5;
    g.lineJoin = "round";
    g.stroke();
    g.lineTo(x(shown.at(-1).t), bottom);
    g.lineTo(x(shown[0].t), bottom);
    g.closePath();
    g.fillStyle = fill;
    g.fill();
  }
}
