// How figures read on the dashboard: counts with thousands separators, rates
// with a sensible number of decimals, durations in words a person skims.

const whole = new Intl.NumberFormat(undefined, { maximumFractionDigits: 0 });
const tenths = new Intl.NumberFormat(undefined, { maximumFractionDigits: 1 });

/** A count: 1234567 -> "1,234,567" (in the reader's locale). */
export function count(n) {
  return n == null ? "–" : whole.format(n);
}

/** A count and its noun: "1 prime", "78,498 primes". */
export function counted(n, noun) {
  return `${count(n)} ${noun}${n === 1 ? "" : "s"}`;
}

/** Tasks per second: one decimal below 10, whole numbers above. */
export function rate(perSecond) {
  if (perSecond == null || !Number.isFinite(perSecond)) return "–";
  return perSecond < 10 ? tenths.format(perSecond) : whole.format(perSecond);
}

/** A duration: "850 ms", "42 s", "3 min 05 s", "2 h 07 min". */
export function duration(ms) {
  if (ms == null || !Number.isFinite(ms) || ms < 0) return "–";
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = Math.floor(ms / 1000);
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${String(s % 60).padStart(2, "0")} s`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h} h ${String(m % 60).padStart(2, "0")} min`;
  return `${Math.floor(h / 24)} d ${h % 24} h`;
}

/** A moment as a time of day to the minute, with the date when it is not today. */
export function clock(unixMs) {
  if (unixMs == null) return "–";
  const at = new Date(unixMs);
  const today = new Date().toDateString() === at.toDateString();
  return today
    ? at.toLocaleTimeString(undefined, { hour: "numeric", minute: "2-digit" })
    : at.toLocaleString(undefined, { month: "short", day: "numeric", hour: "numeric", minute: "2-digit" });
}

/** The full date and time, for tooltips. */
export function fullDate(unixMs) {
  return unixMs == null ? "" : new Date(unixMs).toLocaleString();
}

/** A whole percentage that reaches 100 only when everything is done. */
export function percent(done, total) {
  if (!total) return 0;
  return done >= total ? 100 : Math.min(99, Math.floor((done * 100) / total));
}
