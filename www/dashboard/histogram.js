// A histogram on a canvas, drawn by hand in the throughput chart's style
// (its colours come from the same CSS variables): equal-width bins as bars,
// the range under them and the largest count above. A wasm job's card uses
// it for the fuel its tasks used, from GET /api/jobs/{id}/fuel.

import { clearCanvas } from "./chart.js";
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
    if (!this.data) return;
    const surface = clearCanvas(this.canvas);
    if (!surface) return;
    const { g, cssWidth, cssHeight, colors: { line, fill, grid, text } } = surface;

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
