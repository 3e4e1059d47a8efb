// The waterfall: one row per task of the brush's window, its phases, its errors, and its note.

import { COLOR, FONT, centerText, drawBins, drawTimeAxis, fitCanvas, linear } from "./canvas.js";
import { $, el } from "./dom.js";
import { PHASES, fmtMs, isErrorTask } from "./format.js";
import { countRedraw, runSpan, source, state } from "./state.js";

const WF = { axis: 22, right: 14, band: 44, minRow: 4, maxRow: 18, labelRow: 14, labelledRows: 300 };

/**
 * Geometry of the waterfall for the current rows: row height, label gutter, time scale, and a
 * band of bins above the rows when the batch keeps rows for only some of its tasks.
 */
function waterfallLayout(w, viewH) {
  const v = state.view;
  const n = state.rows.length;
  const band = v && v.tasks != null && v.results !== "all" && n ? WF.band : 0;
  const rowsTop = WF.axis + band + 2;
  const plotH = viewH - rowsTop;
  const fit = n ? plotH / n : WF.maxRow;
  // Up to a few hundred rows, a label each is worth a scroll; beyond, rows shrink toward 4 px.
  const rowH = Math.min(WF.maxRow, Math.max(n <= WF.labelledRows ? WF.labelRow : WF.minRow, fit));
  const labels = n > 0 && rowH >= WF.labelRow;
  const gutter = labels ? Math.min(150, Math.round(w * 0.24)) : 0;
  const d0 = state.window?.from ?? 0;
  const d1 = state.window?.to ?? Math.max(runSpan(), v?.to_ms ?? 0, 1e-6);
  const sx = linear(d0, d1, gutter + 6, w - WF.right);
  return { n, band, rowsTop, plotH, rowH, labels, gutter, sx, d0, d1, total: rowsTop + n * rowH + 4 };
}

export function drawWaterfall() {
  const scroll = $("wf-scroll");
  const canvas = $("waterfall");
  const { ctx, w, h } = fitCanvas(canvas);
  const v = state.view;
  if (!v) return;
  const L = waterfallLayout(w, h);
  $("wf-spacer").style.height = `${Math.max(0, L.total - h)}px`;
  const top = Math.min(scroll.scrollTop, Math.max(0, L.total - h));
  const plot = { x: L.gutter + 6, y: WF.axis, w: w - WF.right - L.gutter - 6, h: h - WF.axis };
  drawTimeAxis(ctx, L.sx, L.d0, L.d1, WF.axis - 4, { y: WF.axis, h: h - WF.axis }, true);
  // Bins stand in for the rows the server did not send: all of them, or all but the failures.
  const binsOnly = v.tasks == null || (v.results !== "all" && !L.n);
  // Lighter than the overview's: here the bars stand in for rows, and must not shout.
  if (binsOnly) drawBins(ctx, { ...plot, y: plot.y + 6, h: plot.h - 10 }, v, L.sx, 0.7);
  else if (L.band) drawBins(ctx, { ...plot, y: plot.y + 4, h: L.band - 6 }, v, L.sx);
  if (L.band) {
    ctx.fillStyle = "#e6e9ee";
    ctx.fillRect(0, WF.axis + L.band, w, 1);
  }
  if (!binsOnly) drawRows(ctx, L, top, w, h);
  const unkept = unkeptRows();
  if (v.tasks == null) drawBadge(ctx, w, h, source.kind === "report" ? `${v.tasks_in_window} tasks in window; no rows in this report` : `zoom in to see tasks (${v.tasks_in_window} in window)`);
  else if (unkept) drawBadge(ctx, w, h, unkept);
  else if (!L.n && v.results === "all") centerText(ctx, w, h + WF.axis, "No task ran in this window.");
  countRedraw();
  if (state.firstDrawMs == null && state.batch) state.firstDrawMs = performance.now();
}

/**
 * Why the window has no task row when the batch keeps rows for some tasks only (`results:
 * errors` or `none`), in words; null when it has rows, or keeps every task's.
 */
function unkeptRows() {
  const v = state.view;
  if (!v || v.tasks == null || state.rows.length || v.results === "all") return null;
  if (v.results === "none") return "No task rows kept: this batch ran with results: none";
  const s = state.batch?.summary;
  const failed = s ? s.failed + s.timed_out + (s.cancelled ?? 0) + (s.interrupted ?? 0) : 0;
  if (failed) return "No failed task in this window: this batch keeps rows for failures only (results: errors)";
  return state.batch?.finished_at
    ? "No task rows kept: this batch ran with results: errors and none failed"
    : "No task rows kept yet: this batch runs with results: errors and none has failed so far";
}

function drawBadge(ctx, w, h, message) {
  ctx.font = `600 12px ${FONT}`;
  // A phone's waterfall is narrower than a long reason: the note above the canvas has it whole.
  const text = fitText(ctx, message, w - 40);
  const tw = ctx.measureText(text).width + 20;
  const x = (w - tw) / 2;
  const y = WF.axis + (h - WF.axis) / 2 - 13;
  ctx.fillStyle = "rgba(255, 255, 255, 0.92)";
  ctx.strokeStyle = "#d5dae1";
  ctx.beginPath();
  ctx.roundRect(x, y, tw, 26, 13);
  ctx.fill();
  ctx.stroke();
  ctx.fillStyle = COLOR.text;
  ctx.textAlign = "center";
  ctx.fillText(text, w / 2, y + 13);
  ctx.textAlign = "left";
  ctx.font = `11px ${FONT}`;
}

function drawRows(ctx, L, top, w, h) {
  const first = Math.max(0, Math.floor(top / L.rowH));
  const last = Math.min(L.n, Math.ceil((top + L.plotH) / L.rowH) + 1);
  ctx.save();
  ctx.beginPath();
  ctx.rect(0, L.rowsTop - 2, w, h - L.rowsTop + 2);
  ctx.clip();
  const barH = Math.max(2, Math.round(L.rowH * 0.62));
  const rowY = (i) => L.rowsTop + i * L.rowH - top;
  for (let i = first; i < last; i++) {
    const t = state.rows[i];
    const y = rowY(i);
    if (t === state.task) {
      ctx.fillStyle = COLOR.select;
      ctx.fillRect(0, y, w, L.rowH);
    } else if (L.labels && i % 2) {
      ctx.fillStyle = "#fafbfc";
      ctx.fillRect(0, y, w, L.rowH);
    }
    if (L.labels) drawRowLabel(ctx, t, y + L.rowH / 2, L.gutter);
  }
  if (L.labels) {
    ctx.fillStyle = "#e6e9ee";
    ctx.fillRect(L.gutter, L.rowsTop - 2, 1, h);
  }
  // Bars are clipped to the plot: a task that began before the window must not run under the labels.
  ctx.beginPath();
  ctx.rect(L.gutter + 1, L.rowsTop - 2, w - L.gutter - 1, h);
  ctx.clip();
  for (let i = first; i < last; i++) drawTaskBar(ctx, state.rows[i], L.sx, rowY(i) + (L.rowH - barH) / 2, barH);
  // Errors last, on their own layer: red and at least 3 px wide, over whatever is beneath.
  for (let i = first; i < last; i++) {
    const t = state.rows[i];
    if (isErrorTask(t)) drawErrorBar(ctx, t, L.sx, rowY(i) + (L.rowH - barH) / 2, barH);
  }
  ctx.restore();
  drawErrorMap(ctx, L, top, w, h);
}

function taskEnd(t) {
  return t.end_ms ?? Math.max(runSpan(), t.start_ms);
}

function drawTaskBar(ctx, t, sx, y, barH) {
  const queuedFrom = t.start_ms - (t.queued_ms ?? 0);
  if (t.queued_ms > 0) {
    ctx.fillStyle = COLOR.queued;
    const qh = Math.max(1, Math.round(barH * 0.45));
    ctx.fillRect(sx(queuedFrom), y + (barH - qh) / 2, Math.max(0.5, sx(t.start_ms) - sx(queuedFrom)), qh);
  }
  const end = taskEnd(t);
  if (t.phases && t.end_ms != null) {
    // The phases are the last attempt's; earlier attempts and their backoff come before it.
    const sum = PHASES.reduce((n, p) => n + (t.phases[p] ?? 0), 0);
    let at = Math.max(t.start_ms, end - sum);
    if (at > t.start_ms) segment(ctx, sx, t.start_ms, at, y, barH, COLOR.retry);
    for (const p of PHASES) {
      const ms = t.phases[p] ?? 0;
      if (ms > 0) segment(ctx, sx, at, at + ms, y, barH, COLOR[p]);
      at += ms;
    }
    // Whatever the phases do not cover still shows, so a bar is never shorter than its task.
    if (sx(end) - sx(t.start_ms) < 1) segment(ctx, sx, t.start_ms, end, y, barH, COLOR.wait_ms);
  } else {
    segment(ctx, sx, t.start_ms, end, y, barH, COLOR.status[t.status] ?? COLOR.status.succeeded);
  }
}

function segment(ctx, sx, a, b, y, h, color) {
  const x0 = sx(a);
  const x1 = sx(b);
  ctx.fillStyle = color;
  ctx.fillRect(x0, y, Math.max(1, x1 - x0), h);
}

function drawErrorBar(ctx, t, sx, y, barH) {
  const x0 = sx(t.start_ms);
  const x1 = sx(taskEnd(t));
  ctx.fillStyle = COLOR.error;
  ctx.fillRect(Math.min(x0, x1 - 3), y, Math.max(3, x1 - x0), barH);
}

function drawRowLabel(ctx, t, y, gutter) {
  ctx.fillStyle = isErrorTask(t) ? COLOR.error : COLOR.text;
  const label = t.id == null ? `#${t.index}` : `#${t.index} ${t.id}`;
  ctx.fillText(fitText(ctx, label, gutter - 12), 8, y);
}

function fitText(ctx, text, width) {
  if (ctx.measureText(text).width <= width) return text;
  let s = text;
  while (s.length > 1 && ctx.measureText(`${s}…`).width > width) s = s.slice(0, -1);
  return `${s}…`;
}

/** A strip at the right edge: where the failed rows are among all rows, scrolled into view or not. */
function drawErrorMap(ctx, L, top, w, h) {
  if (L.total <= h) return;
  const k = (h - L.rowsTop) / L.n;
  const x = w - 7;
  ctx.fillStyle = "#eef1f4";
  ctx.fillRect(x, L.rowsTop, 5, h - L.rowsTop);
  ctx.fillStyle = COLOR.error;
  state.rows.forEach((t, i) => {
    if (isErrorTask(t)) ctx.fillRect(x, L.rowsTop + i * k, 5, Math.max(2, k));
  });
  ctx.strokeStyle = "rgba(37, 99, 235, 0.7)";
  ctx.strokeRect(x - 0.5, L.rowsTop + (top / L.rowH) * k + 0.5, 6, Math.max(4, (L.plotH / L.rowH) * k) - 1);
}

/** The row under a point of the waterfall canvas, or null. */
function rowAt(event) {
  const canvas = $("waterfall");
  const rect = canvas.getBoundingClientRect();
  const L = waterfallLayout(rect.width, rect.height);
  const y = event.clientY - rect.top - L.rowsTop;
  if (y < 0 || !L.n) return null;
  const i = Math.floor((y + $("wf-scroll").scrollTop) / L.rowH);
  return state.rows[i] ?? null;
}

export function scrollToTask(t) {
  const i = state.rows.indexOf(t);
  if (i < 0) return;
  const scroll = $("wf-scroll");
  const rect = $("waterfall").getBoundingClientRect();
  const L = waterfallLayout(rect.width, rect.height);
  const y = i * L.rowH;
  if (y < scroll.scrollTop || y > scroll.scrollTop + L.plotH - L.rowH) scroll.scrollTop = Math.max(0, y - L.plotH / 2);
}

/** Wires the waterfall: a click on a row picks its task, a hover tells it, a scroll redraws. */
export function wireWaterfall(onPick) {
  const canvas = $("waterfall");
  const tip = el("div", { class: "tip", hidden: true });
  $("wf-scroll").parentElement.append(tip);
  canvas.addEventListener("click", (e) => {
    const t = rowAt(e);
    if (t) onPick(t.index);
  });
  canvas.addEventListener("mousemove", (e) => {
    const t = rowAt(e);
    tip.hidden = !t;
    if (!t) return;
    const dur = t.end_ms == null ? "running" : `${fmtMs(t.end_ms - t.start_ms)} ms`;
    tip.textContent = `#${t.index}${t.id ? ` ${t.id}` : ""} · ${t.status.replace("_", " ")} · ${dur}${t.http_status ? ` · ${t.http_status}` : ""}${t.error ? ` · ${t.error.code}` : ""}`;
    const box = tip.parentElement.getBoundingClientRect();
    tip.style.left = `${Math.min(e.clientX - box.left + 12, box.width - tip.offsetWidth - 4)}px`;
    tip.style.top = `${e.clientY - box.top + 14}px`;
  });
  canvas.addEventListener("mouseleave", () => {
    tip.hidden = true;
  });
  $("wf-scroll").addEventListener("scroll", () => requestAnimationFrame(drawWaterfall), { passive: true });
}

/** Says when the waterfall shows bins instead of rows, and why. */
export function renderWaterfallNote() {
  const note = $("wf-note");
  const v = state.view;
  let text = "";
  if (v && v.tasks == null) {
    text = source.kind === "report"
      ? `This report holds no task rows for this window (${v.tasks_in_window} tasks in window): the bars show how many started.`
      : `zoom in to see tasks (${v.tasks_in_window} in window; rows are drawn up to ${v.row_limit})`;
  } else if (v && v.results === "errors" && !state.rows.length) {
    text = `${unkeptRows()}. The bars count every task.`;
  } else if (v && v.results === "errors") {
    text = `This batch keeps rows for failed tasks only (results: "errors"): the bars count every task, the rows are its failures (${state.rows.length} in window).`;
  } else if (v && v.results === "none") {
    text = `This batch keeps no task rows (results: "none"): the bars count its tasks.`;
  }
  note.textContent = text;
  note.hidden = !text;
  const phased = state.rows.some((t) => t.phases);
  $("phase-legend").classList.toggle("no-phases", !phased);
  $("phase-legend").classList.toggle("no-ran", phased && state.rows.every((t) => t.phases));
}
