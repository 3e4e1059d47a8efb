// The latency panel: a histogram on a log axis, and the percentile curve HdrHistogram draws.

import { COLOR, centerText, fitCanvas, linear, logScale, ticks } from "./canvas.js";
import { $ } from "./dom.js";
import { fmtLogTick, fmtMs } from "./format.js";
import { state } from "./state.js";

const CH = { left: 44, right: 12, top: 10, bottom: 24 };

export function drawLatency() {
  drawHistogram();
  drawPercentiles();
}

function chartBox(w, h) {
  return { x: CH.left, y: CH.top, w: w - CH.left - CH.right, h: h - CH.top - CH.bottom };
}

function noLatency(ctx, w, h) {
  const l = state.latency;
  if (l && l.count) return false;
  centerText(ctx, w, h, state.metric === "ttfb" ? "No time to first byte: no HTTP answer yet." : "No task has ended yet.");
  return true;
}

function drawHistogram() {
  const { ctx, w, h } = fitCanvas($("latency-histogram"));
  if (!state.latency || noLatency(ctx, w, h)) return;
  const buckets = state.latency.buckets;
  if (!buckets.length) return;
  const box = chartBox(w, h);
  let lo = Math.max(1e-3, buckets[0].from_ms);
  let hi = Math.max(lo, buckets[buckets.length - 1].to_ms);
  if (hi / lo < 1.5) {
    lo /= 1.25;
    hi *= 1.25;
  }
  const sx = logScale(lo, hi, box.x, box.x + box.w);
  const maxCount = Math.max(1, ...buckets.map((b) => b.count));
  const sy = linear(0, maxCount, box.y + box.h, box.y);
  drawCountAxis(ctx, sy, maxCount, box);
  drawLogAxis(ctx, sx, lo, hi, box);
  ctx.fillStyle = "#6f97d6";
  for (const b of buckets) {
    if (!b.count) continue;
    const x0 = sx(Math.max(b.from_ms, lo));
    const x1 = sx(b.to_ms);
    const y = sy(b.count);
    ctx.fillRect(x0, y, Math.max(1, x1 - x0 - (x1 - x0 > 3 ? 0.5 : 0)), box.y + box.h - y);
  }
  drawPercentileMarks(ctx, sx, box);
}

/** The summary's p50/p95/p99 as labelled lines over the histogram. */
function drawPercentileMarks(ctx, sx, box) {
  const s = state.batch.summary;
  const p = state.metric === "ttfb" ? s.ttfb_ms : s.duration_ms;
  if (!p) return;
  ctx.save();
  ctx.setLineDash([3, 2]);
  ctx.textAlign = "center";
  let lastX = -Infinity;
  let row = 0;
  for (const [name, color] of [["p50", "#2faa63"], ["p95", "#f0962e"], ["p99", "#e5484d"]]) {
    const x = Math.round(sx(p[name])) + 0.5;
    // Close percentiles (a narrow distribution) stack their labels rather than overlap them.
    row = x - lastX > 26 ? 0 : row + 1;
    lastX = x;
    ctx.strokeStyle = color;
    ctx.beginPath();
    ctx.moveTo(x, box.y + 10 + row * 11);
    ctx.lineTo(x, box.y + box.h);
    ctx.stroke();
    ctx.fillStyle = color;
    ctx.fillText(name, x, box.y + 3 + row * 11);
  }
  ctx.restore();
}

function drawCountAxis(ctx, sy, max, box) {
  const { values } = ticks(0, max, Math.max(2, Math.floor(box.h / 34)));
  ctx.textAlign = "right";
  for (const v of values) {
    const y = Math.round(sy(v)) + 0.5;
    ctx.fillStyle = COLOR.grid;
    ctx.fillRect(box.x, y - 0.5, box.w, 1);
    ctx.fillStyle = COLOR.axis;
    ctx.fillText(v >= 10000 ? `${+(v / 1000).toPrecision(3)}k` : String(v), box.x - 6, y);
  }
  ctx.textAlign = "left";
}

function drawLogAxis(ctx, sx, lo, hi, box) {
  const decades = Math.log10(hi / lo);
  const steps = decades > 3 ? [1] : decades > 1.2 ? [1, 2, 5] : [1, 1.5, 2, 3, 5, 7];
  const y = box.y + box.h;
  ctx.fillStyle = COLOR.axis;
  ctx.textAlign = "center";
  let lastX = -Infinity;
  for (let e = Math.floor(Math.log10(lo)); e <= Math.ceil(Math.log10(hi)); e++) {
    for (const m of steps) {
      const v = m * 10 ** e;
      if (v < lo || v > hi) continue;
      const x = Math.round(sx(v)) + 0.5;
      ctx.fillStyle = COLOR.grid;
      ctx.fillRect(x - 0.5, box.y, 1, box.h);
      ctx.fillStyle = "#c9cfd6";
      ctx.fillRect(x - 0.5, y, 1, 4);
      if (x - lastX > 34) {
        ctx.fillStyle = COLOR.axis;
        ctx.fillText(fmtLogTick(v), x, y + 12);
        lastX = x;
      }
    }
  }
  // The unit sits under the count axis, where no tick label can run into it.
  ctx.textAlign = "right";
  ctx.fillText("ms", box.x - 6, y + 12);
  ctx.textAlign = "left";
}

/** HdrHistogram's x axis: log10(1 / (1 − p)), so 90, 99 and 99.9 sit one decade apart. */
const nines = (p) => Math.log10(1 / (1 - p / 100));

function drawPercentiles() {
  const { ctx, w, h } = fitCanvas($("percentile-curve"));
  if (!state.latency || noLatency(ctx, w, h)) return;
  const pts = state.latency.percentiles;
  if (!pts.length) return;
  const box = chartBox(w, h);
  const finite = pts.filter((p) => p.percentile < 100);
  const xMax = Math.max(3, Math.ceil(Math.max(0, ...finite.map((p) => nines(p.percentile))) - 1e-9));
  const xOf = (p) => (p >= 100 ? xMax : Math.min(xMax, nines(p)));
  const sx = linear(0, xMax, box.x, box.x + box.w);
  const maxMs = Math.max(...pts.map((p) => p.ms), 1e-3);
  const { values } = ticks(0, maxMs, Math.max(2, Math.floor(box.h / 34)));
  const top = Math.max(maxMs, values[values.length - 1] ?? maxMs);
  const sy = linear(0, top, box.y + box.h, box.y);
  drawMsAxis(ctx, sy, values, box);
  drawNinesAxis(ctx, sx, xMax, box);
  ctx.beginPath();
  pts.forEach((p, i) => {
    const x = sx(xOf(p.percentile));
    const y = sy(p.ms);
    if (i === 0) ctx.moveTo(x, y);
    else ctx.lineTo(x, y);
  });
  ctx.strokeStyle = "#2563eb";
  ctx.lineWidth = 1.75;
  ctx.lineJoin = "round";
  ctx.stroke();
  ctx.lineTo(sx(xOf(pts[pts.length - 1].percentile)), box.y + box.h);
  ctx.lineTo(sx(xOf(pts[0].percentile)), box.y + box.h);
  ctx.closePath();
  ctx.fillStyle = "rgba(37, 99, 235, 0.08)";
  ctx.fill();
  ctx.lineWidth = 1;
}

function drawMsAxis(ctx, sy, values, box) {
  ctx.textAlign = "right";
  for (const v of values) {
    const y = Math.round(sy(v)) + 0.5;
    ctx.fillStyle = COLOR.grid;
    ctx.fillRect(box.x, y - 0.5, box.w, 1);
    ctx.fillStyle = COLOR.axis;
    ctx.fillText(String(+v.toPrecision(4)), box.x - 6, y);
  }
  ctx.save();
  ctx.translate(10, box.y + box.h / 2);
  ctx.rotate(-Math.PI / 2);
  ctx.textAlign = "center";
  ctx.fillText("ms", 0, 0);
  ctx.restore();
  ctx.textAlign = "left";
}

function drawNinesAxis(ctx, sx, xMax, box) {
  const y = box.y + box.h;
  const marks = [[0, "0"], [nines(50), "50"], [1, "90"], [2, "99"], [3, "99.9"], [4, "99.99"], [5, "99.999"], [6, "99.9999"]];
  ctx.textAlign = "center";
  for (const [x, label] of marks) {
    if (x > xMax + 1e-9) continue;
    const px = Math.round(sx(x)) + 0.5;
    ctx.fillStyle = COLOR.grid;
    ctx.fillRect(px - 0.5, box.y, 1, box.h);
    ctx.fillStyle = COLOR.axis;
    ctx.fillText(label, Math.min(px, box.x + box.w - 14), y + 12);
  }
  ctx.textAlign = "left";
}

/** The latency panel's line of figures, and which metric's button is pressed. */
export function renderLatencyText() {
  const l = state.latency;
  $("latency-text").textContent = l && l.count
    ? `${l.count} tasks · min ${fmtMs(l.min_ms)} · mean ${fmtMs(l.mean_ms)} · max ${fmtMs(l.max_ms)} ms`
    : "";
  for (const b of document.querySelectorAll(".toggle button")) b.setAttribute("aria-pressed", String(b.dataset.metric === state.metric));
}
