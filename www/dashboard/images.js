// Which task outputs are pictures, and those pictures as PNG blobs an <img>
// can show. A PNG is known by its 8-byte signature and shown as it is; a
// binary PPM (`P6`, 8 bits a channel: what the example path tracer writes
// with --ppm) is decoded here and re-encoded as a PNG by a canvas. Anything
// else is not read past its first bytes: the download is cancelled, so an
// output of many megabytes that is not a picture costs one network chunk.

const PNG_SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];
// A picture larger than this is not shown (the outputs route has it).
export const MAX_IMAGE_BYTES = 16 << 20;
// A PPM's header fits in this many bytes, or it is not one we show.
const PPM_HEADER_BYTES = 64;

/** "png", "ppm" or null, from an output's first bytes (at least 8 of them). */
export function sniff(head) {
  if (PNG_SIGNATURE.every((byte, i) => head[i] === byte)) return "png";
  if (head[0] === 0x50 && head[1] === 0x36 && isSpace(head[2])) return "ppm";
  return null;
}

const isSpace = (byte) => byte === 0x20 || byte === 0x0a || byte === 0x0d || byte === 0x09;

/**
 * Reads a task output's response: a PNG blob if it is a picture, else null,
 * having read no more than it needed to tell.
 * @param {Response} response from GET /api/jobs/{id}/outputs/{task}
 */
export async function readPicture(response) {
  const declared = Number(response.headers.get("Content-Length") ?? 0);
  const reader = response.body.getReader();
  const chunks = [];
  let length = 0;
  let kind;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    length += value.length;
    if (kind === undefined && length >= PNG_SIGNATURE.length) {
      kind = sniff(concat(chunks, length));
      if (!kind || declared > MAX_IMAGE_BYTES) {
        await reader.cancel();
        return null;
      }
    }
    if (length > MAX_IMAGE_BYTES) {
      await reader.cancel();
      return null;
    }
  }
  const bytes = concat(chunks, length);
  kind ??= sniff(bytes);
  if (kind === "png") return new Blob([bytes], { type: "image/png" });
  if (kind === "ppm") return ppmToPng(bytes);
  return null;
}

function concat(chunks, length) {
  if (chunks.length === 1) return chunks[0];
  const bytes = new Uint8Array(length);
  let at = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, at);
    at += chunk.length;
  }
  chunks.splice(0, chunks.length, bytes);
  return bytes;
}

/**
 * A binary PPM's header: `P6`, width, height and maximum value, separated
 * by whitespace (with `#` comments), then one whitespace byte. Null if it is
 * not one with 8-bit channels and all its pixels.
 */
export function ppmHeader(bytes) {
  const fields = [];
  let at = 2;
  while (fields.length < 3 && at < Math.min(bytes.length, PPM_HEADER_BYTES)) {
    const byte = bytes[at];
    if (isSpace(byte)) {
      at += 1;
    } else if (byte === 0x23) {
      while (at < bytes.length && bytes[at] !== 0x0a) at += 1;
    } else if (byte >= 0x30 && byte <= 0x39) {
      let n = 0;
      while (at < bytes.length && bytes[at] >= 0x30 && bytes[at] <= 0x39) n = n * 10 + bytes[at++] - 0x30;
      fields.push(n);
    } else {
      return null;
    }
  }
  const [width, height, max] = fields;
  if (fields.length < 3 || !isSpace(bytes[at]) || !(width > 0 && height > 0) || max !== 255) return null;
  const offset = at + 1;
  if (bytes.length < offset + width * height * 3) return null;
  return { width, height, offset };
}

/** A binary PPM as a PNG blob, or null if it is not one we can show. */
async function ppmToPng(bytes) {
  const header = ppmHeader(bytes);
  if (!header) return null;
  const { width, height, offset } = header;
  const rgba = new Uint8ClampedArray(width * height * 4);
  for (let i = 0, j = offset; i < rgba.length; i += 4, j += 3) {
    rgba[i] = bytes[j];
    rgba[i + 1] = bytes[j + 1];
    rgba[i + 2] = bytes[j + 2];
    rgba[i + 3] = 255;
  }
  const canvas = Object.assign(document.createElement("canvas"), { width, height });
  canvas.getContext("2d").putImageData(new ImageData(rgba, width, height), 0, 0);
  return new Promise((resolve) => canvas.toBlob(resolve, "image/png"));
}
