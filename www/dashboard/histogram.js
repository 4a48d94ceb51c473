// A histogram on a canvas, drawn by hand in the throughput chart's style
// (its colours come from the same CSS variables): equal-width bins as bars,
// the range under them and the largest count above. A wasm job's card uses
// it for the fuel its tasks used, from GET /api/jobs/{id}/fuel.

import * as format from "./format.js";

export class Histogram {
  /** @param {HTMLCanvasElement} canvas */
  constructor(canvas) {
    this.canvas = canvas;
    /** @type {{min: number, max: number, bins: number[]} | null} */
    this.data = null;
    // A card's canvas is laid out only once the card is open: draw then.
    new ResizeObserver(() => this.draw()).observe(canvas);
  }

  /** Equal-width bins from `min` to `max`, the first starting at `min`. */
  show(min, max, bins) {
    this.data = { min, max, bins };
    this.canvas.dataset.bins = bins.length;
    this.draw();
  }

  draw() {
    const canvas = this.canvas;
    const ratio = window.devicePixelRatio || 1;
    const cssWidth = canvas.clientWidth;
    const cssHeight = canvas.clientHeight;
    if (!cssWidth || !cssHeight || !this.data) return;
    canvas.width = Math.round(cssWidth * ratio);
    canvas.height = Math.round(cssHeight * ratio);
    const g = canvas.getContext("2d");
    g.setTransform(ratio, 0, 0, ratio, 0, 0);
    g.clearRect(0, 0, cssWidth, cssHeight);

    const style = getComputedStyle(canvas);
    const line = style.getPropertyValue("--chart-line").trim() || "#2f6fed";
    const fill = style.getPropertyValue("--chart-fill").trim() || "rgba(47,111,237,0.15)";
    const grid = style.getPropertyValue("--chart-grid").trim() || "#dde1e8";
    const text = style.getPropertyValue("--chart-text").trim() || "#5d6678";
    g.font = `11px ${style.fontFamily}`;

    const { min, max, bins } = this.data;
    const tallest = Math.max(...bins, 1);
    const left = 4;
    const right = cssWidth - 4;
    const top = 14;
    const bottom = cssHeight - 18;
    const slot = (right - left) / Math.max(bins.length, 1);
    const gap = slot > 6 ? 1 : 0;

    g.strokeStyle = grid;
    g.lineWidth = 1;
    g.beginPath();
    g.moveTo(left, Math.round(bottom) + 0.5);
    g.lineTo(right, Math.round(bottom) + 0.5);
    g.stroke();

    bins.forEach((count, i) => {
      if (count === 0) return;
      // At least a pixel: a bin with one task among a million still shows.
      const h = Math.max(1, (count / tallest) * (bottom - top));
      const x = left + i * slot + gap;
      g.fillStyle = fill;
      g.fillRect(x, bottom - h, slot - 2 * gap, h);
      g.fillStyle = line;
      g.fillRect(x, bottom - h, slot - 2 * gap, 1.5);
    });

    g.fillStyle = text;
    g.textBaseline = "bottom";
    g.textAlign = "left";
    g.fillText(`${format.count(tallest)} ${tallest === 1 ? "task" : "tasks"}`, left + 2, top - 1);
    g.textBaseline = "top";
    g.fillText(format.count(min), left, bottom + 4);
    g.textAlign = "right";
    g.fillText(format.count(max), right, bottom + 4);
  }
}
