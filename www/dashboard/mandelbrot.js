// A Mandelbrot job's picture on a canvas, painted band by band as tiles
// arrive, or all at once from a finished job's results. The colours are the
// PNG export's (coordinator/src/export.rs, `colour`), so the canvas and a
// downloaded PNG show the same picture.

// (position on the scale, [r, g, b]) from deep blue through orange to pale yellow.
const STOPS = [
  [0.0, [9, 1, 47]],
  [0.35, [24, 82, 177]],
  [0.7, [248, 148, 33]],
  [1.0, [255, 250, 205]],
];

/**
 * The colour of an escape count, as export.rs computes it: black inside the
 * set, outside a gradient on a logarithmic scale. A line-by-line port:
 * `f64::ln_1p` is Math.log1p and `f64::round` (half away from zero) equals
 * Math.round for these non-negative values. Both log1p are correctly rounded
 * in practice; where they differed in the last bit, a channel could differ by
 * one only if it fell exactly halfway between two integers.
 * @returns {[number, number, number]}
 */
export function colour(n, maxIter) {
  if (n >= maxIter) return [0, 0, 0];
  const t = Math.log1p(n) / Math.log1p(maxIter);
  let upper = STOPS.findIndex(([at]) => at >= t);
  if (upper < 0) upper = STOPS.length - 1;
  upper = Math.max(upper, 1);
  const [t0, c0] = STOPS[upper - 1];
  const [t1, c1] = STOPS[upper];
  const f = Math.min(1, Math.max(0, (t - t0) / (t1 - t0)));
  return [0, 1, 2].map((i) => Math.round(c0[i] + (c1[i] - c0[i]) * f));
}

// Counts up to this many get a lookup table (3 bytes each); above it, each
// pixel is computed (max_iter may be ten million).
const TABLE_LIMIT = 1 << 20;

function palette(maxIter) {
  if (maxIter > TABLE_LIMIT) {
    return (n, out, at) => {
      const [r, g, b] = colour(n, maxIter);
      out[at] = r;
      out[at + 1] = g;
      out[at + 2] = b;
    };
  }
  const table = new Uint8Array(3 * (maxIter + 1));
  for (let n = 0; n < maxIter; n++) table.set(colour(n, maxIter), 3 * n);
  // n >= max_iter is black, and the table's last entry already is.
  return (n, out, at) => {
    const i = 3 * Math.min(n, maxIter);
    out[at] = table[i];
    out[at + 1] = table[i + 1];
    out[at + 2] = table[i + 2];
  };
}

export class MandelbrotImage {
  /**
   * @param {HTMLCanvasElement} canvas
   * @param {{width: number, height: number, max_iter: number}} params
   */
  constructor(canvas, { width, height, max_iter }) {
    this.canvas = canvas;
    this.width = width;
    this.height = height;
    this.maxIter = max_iter;
    canvas.width = width;
    canvas.height = height;
    this.context = canvas.getContext("2d");
    this.paint = palette(max_iter);
    this.rowsPainted = new Uint8Array(height);
    this.painted = 0;
    this.canvas.dataset.painted = "0";
  }

  get complete() {
    return this.painted === this.height;
  }

  /** Paints rows [firstRow, firstRow + counts.length / width) from escape counts. */
  paintRows(firstRow, width, counts, source) {
    if (width !== this.width || counts.length % width !== 0) return;
    const rows = Math.min(counts.length / width, this.height - firstRow);
    if (rows <= 0) return;
    const image = this.context.createImageData(width, rows);
    const data = image.data;
    for (let i = 0, at = 0; i < rows * width; i++, at += 4) {
      this.paint(counts[i], data, at);
      data[at + 3] = 255;
    }
    this.context.putImageData(image, 0, firstRow);
    for (let row = firstRow; row < firstRow + rows; row++) {
      if (!this.rowsPainted[row]) {
        this.rowsPainted[row] = 1;
        this.painted += 1;
      }
    }
    // For tests and the curious: how much is painted, and from what.
    this.canvas.dataset.painted = String(this.painted);
    this.canvas.dataset.source = source;
  }

  /** Paints a finished job's `{width, height, max_iter, iterations}`. */
  paintResult(result) {
    this.paintRows(0, result.width, result.iterations, "results");
  }
}
