// The overview strip: the whole run's bins, its stages, and the brush that picks the waterfall's window.

import { COLOR, centerText, drawBins, drawTimeAxis, fitCanvas, linear } from "./canvas.js";
import { $ } from "./dom.js";
import { fmtSpan } from "./format.js";
import { runSpan, state } from "./state.js";

const OV = { left: 8, right: 8, top: 16, bottom: 20 };
let drag = null;

function overviewScale(w) {
  return linear(0, Math.max(runSpan(), 1e-6), OV.left, w - OV.right);
}

export function drawOverview() {
  const canvas = $("overview");
  const { ctx, w, h } = fitCanvas(canvas);
  const tl = state.overview;
  if (!tl) return;
  const span = runSpan();
  const sx = overviewScale(w);
  const box = { x: OV.left, y: OV.top, w: w - OV.left - OV.right, h: h - OV.top - OV.bottom };
  if (!tl.bins.length || !(span > 0)) {
    centerText(ctx, w, h, "No task has started yet.");
    return;
  }
  drawTimeAxis(ctx, sx, 0, span, h - OV.bottom + 2, { y: box.y, h: box.h });
  const peaks = drawBins(ctx, box, tl, sx);
  drawStages(ctx, sx, box);
  ctx.fillStyle = COLOR.axis;
  ctx.fillText(`≤ ${peaks.maxStarted} started / ${fmtSpan(tl.bin_ms)} bin`, OV.left, 7);
  ctx.textAlign = "right";
  // `in_flight` is a bin's mean (tasks running on average over it), rarely a whole number.
  const flight = Number(peaks.maxFlight.toFixed(peaks.maxFlight < 10 ? 2 : 0));
  ctx.fillText(`mean in flight ≤ ${flight}`, w - OV.right, 7);
  ctx.textAlign = "left";
  drawBrush(ctx, sx, box);
}

/** Stage boundaries of a staged load run, as dashed lines: where the ramp changed. */
function drawStages(ctx, sx, box) {
  const stages = state.batch?.summary?.stages;
  if (!stages?.length) return;
  ctx.save();
  ctx.strokeStyle = "#9aa3af";
  ctx.setLineDash([3, 3]);
  ctx.fillStyle = COLOR.axis;
  for (const st of stages) {
    const x = Math.round(sx(st.start_ms)) + 0.5;
    ctx.beginPath();
    ctx.moveTo(x, box.y);
    ctx.lineTo(x, box.y + box.h);
    ctx.stroke();
    const label = `stage ${st.index + 1}`;
    ctx.fillStyle = "rgba(255, 255, 255, 0.85)";
    ctx.fillRect(x + 2, box.y + 6, ctx.measureText(label).width + 4, 13);
    ctx.fillStyle = COLOR.axis;
    ctx.fillText(label, x + 4, box.y + 12.5);
  }
  ctx.restore();
}

function drawBrush(ctx, sx, box) {
  const win = drag ? { from: Math.min(drag.a, drag.b), to: Math.max(drag.a, drag.b) } : state.window;
  if (!win) return;
  const x0 = Math.max(box.x, sx(win.from));
  const x1 = Math.min(box.x + box.w, Math.max(sx(win.to), x0 + 1));
  ctx.fillStyle = "rgba(246, 247, 249, 0.72)";
  ctx.fillRect(box.x, box.y - 2, x0 - box.x, box.h + 4);
  ctx.fillRect(x1, box.y - 2, box.x + box.w - x1, box.h + 4);
  ctx.fillStyle = COLOR.select;
  ctx.fillRect(x0, box.y - 2, x1 - x0, box.h + 4);
  ctx.fillStyle = COLOR.selectLine;
  ctx.fillRect(Math.round(x0) - 1, box.y - 2, 2, box.h + 4);
  ctx.fillRect(Math.round(x1) - 1, box.y - 2, 2, box.h + 4);
}

function brushMs(event) {
  const canvas = $("overview");
  const rect = canvas.getBoundingClientRect();
  const sx = overviewScale(rect.width);
  return Math.min(Math.max(sx.invert(event.clientX - rect.left), 0), runSpan());
}

/** Wires the brush: a drag zooms to its window, a double click or the reset button to the whole run. */
export function wireBrush(onZoom) {
  const canvas = $("overview");
  canvas.addEventListener("pointerdown", (e) => {
    if (!state.overview || e.button !== 0) return;
    canvas.setPointerCapture(e.pointerId);
    drag = { a: brushMs(e), b: brushMs(e), x: e.clientX };
  });
  canvas.addEventListener("pointermove", (e) => {
    if (!drag) return;
    drag.b = brushMs(e);
    drawOverview();
  });
  const finish = (e) => {
    if (!drag) return;
    const d = drag;
    drag = null;
    // A click without a drag keeps the window: selecting needs a few pixels of intent.
    if (Math.abs(e.clientX - d.x) >= 4) onZoom(d.a, d.b);
    else drawOverview();
  };
  canvas.addEventListener("pointerup", finish);
  canvas.addEventListener("pointercancel", () => {
    drag = null;
    drawOverview();
  });
  canvas.addEventListener("dblclick", () => onZoom(0, Infinity));
  $("reset-zoom").addEventListener("click", () => onZoom(0, Infinity));
}

/** Names the brush's window above the waterfall. */
export function renderWindowText() {
  const w = state.window;
  $("window-text").textContent = w ? `${fmtSpan(w.from)} – ${fmtSpan(w.to)}` : `whole run · ${fmtSpan(runSpan())}`;
  $("reset-zoom").hidden = !w;
}
