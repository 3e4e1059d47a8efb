// Formatting shared by every view; the cards' formats are part of the page's contract with its tests.

/** The phases of an HTTP task, in the order they happen. */
export const PHASES = ["dns_ms", "connect_ms", "tls_ms", "send_ms", "wait_ms", "receive_ms"];

export const fmtMs = (v) => (v == null ? "—" : v.toFixed(2));
export const fmtInt = (v) => (v == null ? "—" : String(Math.round(v)));
export const fmtRate = (v) => (v == null ? "—" : v.toFixed(1));
export const fmtPct = (v) => (v == null ? "—" : `${(v * 100).toFixed(2)}%`);
const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
const pad2 = (n) => String(n).padStart(2, "0");

/** UTC, never local time nor "2 min ago": a report must look the same wherever and whenever opened. */
export function fmtDateTime(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  return `${MONTHS[d.getUTCMonth()]} ${d.getUTCDate()} ${pad2(d.getUTCHours())}:${pad2(d.getUTCMinutes())}:${pad2(d.getUTCSeconds())} UTC`;
}

export function fmtClock(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  return `${pad2(d.getUTCHours())}:${pad2(d.getUTCMinutes())}:${pad2(d.getUTCSeconds())}`;
}

/** A duration for prose: 850 ms, 12.4 s, 3 min 5 s. */
export function fmtSpan(ms) {
  if (ms == null) return "—";
  if (ms === 0) return "0";
  if (ms < 1000) return `${ms < 10 ? ms.toFixed(2) : ms.toFixed(0)} ms`;
  if (ms < 60000) return `${(ms / 1000).toFixed(ms < 10000 ? 2 : 1)} s`;
  return `${Math.floor(ms / 60000)} min ${Math.round((ms % 60000) / 1000)} s`;
}

/** An axis label, with as many decimals as the tick step needs; seconds once the axis reaches 2 s. */
export function fmtTick(v, step, max) {
  if (max >= 2000) {
    const digits = Math.max(0, -Math.floor(Math.log10(step / 1000) + 1e-9));
    return `${(v / 1000).toFixed(digits)} s`;
  }
  const digits = Math.max(0, -Math.floor(Math.log10(step) + 1e-9));
  return `${v.toFixed(digits)} ms`;
}

/** A log axis's label: 0.5, 2, 50, 1s. */
export function fmtLogTick(v) {
  if (v >= 1000) return `${+(v / 1000).toPrecision(3)}s`;
  return String(+v.toPrecision(3));
}

export function errorRate(s) {
  return s.tasks ? (s.failed + s.timed_out) / s.tasks : 0;
}

export function shortId(id) {
  // Ids are UUIDv7: the first characters are the creation time, alike for batches made together.
  return `…${id.slice(-8)}`;
}

export function isErrorTask(t) {
  return t.error != null || t.status === "failed" || t.status === "timed_out";
}

/** A number for a URL: at most three decimals, no trailing zeros. */
export const num = (v) => String(+v.toFixed(3));
