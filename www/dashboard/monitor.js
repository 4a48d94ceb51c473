// The monitor channel (PROTOCOL.md, "Monitor channel"): one WebSocket at a
// time to /ws/monitor, the token in its subprotocols (never in the URL),
// decoded at this edge into snapshots, events and tiles, and opened again
// with backoff whenever it drops.
//
// A browser does not show the HTTP status of a refused upgrade, so when a
// socket closes without ever opening, the token is checked over HTTP: a
// refusal ends the channel ("refused"), anything else means the coordinator
// is away or busy and the channel tries again ("reconnecting").

import { checkToken } from "./api.js";

const MONITOR_PROTOCOL = "browsergrid.monitor";
const TOKEN_PROTOCOL_PREFIX = "browsergrid.token.";
const TILE_FRAME = 0x02;
const TILE_HEADER = 21;
const FIRST_DELAY_MS = 500;
const MAX_DELAY_MS = 10_000;

// Tiles are little-endian; every platform a browser runs on is too, but a
// big-endian one would get its counts through a DataView instead.
const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/**
 * A finished band of a Mandelbrot image, or null when the frame is not one.
 * @returns {{job: number, firstRow: number, rows: number, width: number, counts: Uint32Array} | null}
 */
export function decodeTile(buffer) {
  if (buffer.byteLength < TILE_HEADER) return null;
  const view = new DataView(buffer);
  if (view.getUint8(0) !== TILE_FRAME) return null;
  const job = Number(view.getBigUint64(1, true));
  const firstRow = view.getUint32(9, true);
  const rows = view.getUint32(13, true);
  const width = view.getUint32(17, true);
  if (buffer.byteLength !== TILE_HEADER + 4 * rows * width) return null;
  let counts;
  if (LITTLE_ENDIAN) {
    // slice() copies to a fresh, 4-byte aligned buffer.
    counts = new Uint32Array(buffer.slice(TILE_HEADER));
  } else {
    counts = new Uint32Array(rows * width);
    for (let i = 0; i < counts.length; i++) counts[i] = view.getUint32(TILE_HEADER + 4 * i, true);
  }
  return { job, firstRow, rows, width, counts };
}

function monitorUrl() {
  const url = new URL("ws/monitor", location.href);
  url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  url.search = "";
  url.hash = "";
  return url.href;
}

/**
 * The subprotocols that carry the token: a browser cannot set headers on a
 * WebSocket, and a URL is kept by proxies' logs and browser history, so the
 * token goes in `Sec-WebSocket-Protocol`, base64url-encoded (a subprotocol
 * is an HTTP token, and a token may hold any character). The coordinator
 * answers with MONITOR_PROTOCOL.
 */
function monitorProtocols(token) {
  let binary = "";
  for (const byte of new TextEncoder().encode(token)) binary += String.fromCharCode(byte);
  const base64url = btoa(binary).replaceAll("+", "-").replaceAll("/", "_").replace(/=+$/, "");
  return [MONITOR_PROTOCOL, `${TOKEN_PROTOCOL_PREFIX}${base64url}`];
}

/**
 * Opens the channel and keeps it open until `close()`.
 *
 * @param {string} token
 * @param {{
 *   onSnapshot: (snapshot: object) => void,
 *   onEvent: (event: object) => void,
 *   onTile: (tile: object) => void,
 *   onState: (state: "connecting" | "live" | "reconnecting" | "refused", detail?: object) => void,
 * }} handlers
 */
export function openMonitor(token, handlers) {
  let socket = null;
  let retry = null;
  let failures = 0;
  let closed = false;

  function connect() {
    retry = null;
    handlers.onState(failures === 0 ? "connecting" : "reconnecting", { attempt: failures + 1 });
    let opened = false;
    socket = new WebSocket(monitorUrl(), monitorProtocols(token));
    socket.binaryType = "arraybuffer";
    socket.onopen = () => {
      opened = true;
    };
    socket.onmessage = (message) => {
      if (closed) return;
      if (typeof message.data !== "string") {
        const tile = decodeTile(message.data);
        if (tile) handlers.onTile(tile);
        return;
      }
      let event;
      try {
        event = JSON.parse(message.data);
      } catch {
        console.warn("monitor: skipped a text frame that is not JSON");
        return;
      }
      if (event.type === "snapshot") {
        failures = 0;
        handlers.onState("live");
        handlers.onSnapshot(event);
      } else {
        handlers.onEvent(event);
      }
    };
    socket.onclose = async () => {
      socket = null;
      if (closed) return;
      if (!opened) {
        const verdict = await checkToken(token);
        // The page may have closed this channel meanwhile (a new token).
        if (closed) return;
        if (verdict === "refused") {
          closed = true;
          handlers.onState("refused");
          return;
        }
      }
      // 0.5 s doubling to 10 s, ±25 % so that many dashboards do not return
      // to a restarted coordinator in step.
      const base = Math.min(MAX_DELAY_MS, FIRST_DELAY_MS * 2 ** failures);
      const delay = Math.round(base * (0.75 + Math.random() * 0.5));
      failures += 1;
      handlers.onState("reconnecting", { delay, attempt: failures + 1, retryAt: Date.now() + delay });
      retry = setTimeout(connect, delay);
    };
  }

  connect();
  return {
    close() {
      closed = true;
      clearTimeout(retry);
      if (socket) socket.close(1000, "dashboard closed");
    },
    /** Skips the wait and tries again at once. */
    retryNow() {
      if (!closed && retry) {
        clearTimeout(retry);
        connect();
      }
    },
  };
}
