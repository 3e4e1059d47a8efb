// What every canvas shares: colors, crisp HiDPI sizing, scales and ticks, the time axis, the bins.

import { fmtTick } from "./format.js";

/** DevTools' network colors for the phases, and one color per task status. */
export const COLOR = {
  queued: "#dde2e8",
  dns_ms: "#1f9e8f",
  connect_ms: "#f0962e",
  tls_ms: "#b35fd9",
  send_ms: "#7b8bb3",
  wait_ms: "#2faa63",
  receive_ms: "#3b7ff2",
  retry: "#b9c1cc",
  error: "#e5484d",
  started: "#a9c1e6",
  inFlight: "#243245",
  grid: "#edf0f3",
  axis: "#6b7482",
  text: "#1d2330",
  select: "rgba(37, 99, 235, 0.12)",
  selectLine: "#2563eb",
  status: {
    succeeded: "#4a8fdc",
    running: "#9ec1f2",
    pending: "#c8ced6",
    failed: "#e5484d",
    timed_out: "#f08c00",
    cancelled: "#9aa1ab",
    interrupted: "#a36ad6",
  },
};

/** The page's font family, read from its style at start-up: canvases do not inherit it. */
export let FONT = "system-ui, sans-serif";

export function useFont(family) {
  FONT = family;
}

/** Sizes a canvas's backing store to its CSS box times devicePixelRatio, so lines stay crisp on HiDPI. */
export function fitCanvas(canvas) {
  const rect = canvas.getBoundingClientRect();
  const dpr = window.devicePixelRatio || 1;
  const w = Math.max(1, Math.round(rect.width));
  const h = Math.max(1, Math.round(rect.height));
  if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
    canvas.width = Math.round(w * dpr);
    canvas.height = Math.round(h * dpr);
  }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, w, h);
  ctx.font = `11px ${FONT}`;
  ctx.textBaseline = "middle";
  return { ctx, w, h };
}

export function linear(d0, d1, r0, r1) {
  const k = d1 === d0 ? 0 : (r1 - r0) / (d1 - d0);
  const f = (v) => r0 + (v - d0) * k;
  f.invert = (x) => (k === 0 ? d0 : d0 + (x - r0) / k);
  return f;
}

export function logScale(d0, d1, r0, r1) {
  const l = linear(Math.log10(d0), Math.log10(d1), r0, r1);
  return (v) => l(Math.log10(Math.max(v, d0 / 10)));
}

function niceStep(range, count) {
  const raw = range / Math.max(1, count);
  if (!(raw > 0)) return 1;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const norm = raw / mag;
  // Rounded up, so there are never more ticks than asked for.
  return (norm <= 1 ? 1 : norm <= 2 ? 2 : norm <= 5 ? 5 : 10) * mag;
}

export function ticks(d0, d1, count) {
  const step = niceStep(d1 - d0, count);
  const out = [];
  for (let v = Math.ceil(d0 / step) * step; v <= d1 + step * 1e-9; v += step) out.push(+v.toPrecision(12));
  return { step, values: out };
}

export function centerText(ctx, w, h, text) {
  ctx.fillStyle = COLOR.axis;
  ctx.textAlign = "center";
  ctx.fillText(text, w / 2, h / 2);
  ctx.textAlign = "left";
}

/** Time ticks along a horizontal axis at `y`, labels below (or above) it, grid lines over `grid`. */
export function drawTimeAxis(ctx, sx, d0, d1, y, grid, labelsAbove = false) {
  const width = Math.abs(sx(d1) - sx(d0));
  const { step, values } = ticks(d0, d1, Math.max(2, Math.floor(width / 75)));
  ctx.fillStyle = COLOR.axis;
  ctx.textAlign = "center";
  for (const v of values) {
    const x = Math.round(sx(v)) + 0.5;
    if (grid) {
      ctx.fillStyle = COLOR.grid;
      ctx.fillRect(x - 0.5, grid.y, 1, grid.h);
      ctx.fillStyle = COLOR.axis;
    }
    ctx.fillText(fmtTick(v, step, d1), Math.min(Math.max(x, 24), ctx.canvas.clientWidth - 22), labelsAbove ? y - 7 : y + 8);
  }
  ctx.textAlign = "left";
}

/**
 * A timeline's bins in a box: bars of tasks started per bin, a line of tasks in flight, and the
 * bins with errors as red marks in a strip of their own. Error marks are drawn for every such
 * bin, at least 2 px wide, so no zoom level hides one.
 */
export function drawBins(ctx, box, tl, sx, alpha = 1) {
  const bins = tl.bins;
  if (!bins.length) return;
  let maxStarted = 1;
  let maxFlight = 1;
  for (const b of bins) {
    maxStarted = Math.max(maxStarted, b.started);
    maxFlight = Math.max(maxFlight, b.in_flight);
  }
  const stripH = 5;
  const plotY = box.y + stripH + 3;
  const plotH = box.h - stripH - 3;
  ctx.save();
  ctx.beginPath();
  ctx.rect(box.x, box.y, box.w, box.h);
  ctx.clip();
  ctx.globalAlpha = alpha;
  ctx.fillStyle = COLOR.started;
  for (const b of bins) {
    const x0 = sx(b.start_ms);
    const x1 = sx(b.start_ms + tl.bin_ms);
    const w = Math.max(1, x1 - x0 - (x1 - x0 > 4 ? 1 : 0));
    const h = (b.started / maxStarted) * plotH;
    if (h > 0) ctx.fillRect(x0, plotY + plotH - h, w, Math.max(1, h));
  }
  ctx.strokeStyle = COLOR.inFlight;
  ctx.lineWidth = 1.5;
  ctx.lineJoin = "round";
  ctx.beginPath();
  bins.forEach((b, i) => {
    const x = sx(b.start_ms + tl.bin_ms / 2);
    const y = plotY + plotH - (b.in_flight / maxFlight) * (plotH - 2) - 1;
    if (i === 0) ctx.moveTo(x, y);
    else ctx.lineTo(x, y);
  });
  ctx.stroke();
  ctx.globalAlpha = 1;
  let maxErrors = 1;
  for (const b of bins) maxErrors = Math.max(maxErrors, b.errors);
  for (const b of bins) {
    if (!b.errors) continue;
    const x0 = sx(b.start_ms);
    const w = Math.max(2, sx(b.start_ms + tl.bin_ms) - x0);
    ctx.fillStyle = COLOR.error;
    ctx.globalAlpha = 0.55 + 0.45 * (b.errors / maxErrors);
    ctx.fillRect(x0, box.y, w, stripH);
    // A tick down into the bars too, so an error reads against its moment's load.
    ctx.fillRect(x0, plotY + plotH - Math.min(plotH, 3 + (b.errors / maxStarted) * plotH), Math.min(w, 2), Math.min(plotH, 3 + (b.errors / maxStarted) * plotH));
  }
  ctx.restore();
  return { maxStarted, maxFlight };
}
