// The open batch: reading it (again), zooming its waterfall, picking a task, and drawing it all.

import { renderCards, renderHeader, renderLost, renderMaps } from "./cards.js";
import { $ } from "./dom.js";
import { drawLatency, renderLatencyText } from "./latency.js";
import { updateListRow } from "./sidebar.js";
import { generation, runSpan, sameWindow, source, state, writeHash } from "./state.js";
import { renderTables, renderVerdict } from "./tables.js";
import { renderTaskDetail } from "./task.js";
import { drawOverview, renderWindowText } from "./timeline.js";
import { drawWaterfall, renderWaterfallNote, scrollToTask } from "./waterfall.js";

/** Bins of the overview and of the waterfall's window: about a bin per few pixels. */
const OVERVIEW_BINS = 200;
const VIEW_BINS = 200;
/** Bumped by each zoom, so a slower answer for an earlier window is dropped. */
let viewGeneration = 0;

/** Reads the batch, both timelines and the latency again, then draws; answers for an older batch are dropped. */
export async function refresh(gen = generation) {
  const id = state.id;
  const win = state.window;
  const [batch, overview, latency, view] = await Promise.all([
    source.batch(id),
    source.timeline(id, null, OVERVIEW_BINS),
    source.latency(id, state.metric),
    win ? source.timeline(id, win, VIEW_BINS) : null,
  ]);
  if (gen !== generation) return;
  state.batch = batch;
  state.overview = overview;
  state.latency = latency;
  // The brush may have moved while this was read: its own answer then sets the view.
  if (sameWindow(win, state.window)) setView(view ?? (state.window ? state.view : overview));
  render();
  updateListRow(batch);
}

function setView(view) {
  state.view = view;
  state.rows = view.tasks ? view.tasks.slice().sort((a, b) => a.start_ms - b.start_ms || a.index - b.index) : [];
  if (state.task) state.task = state.rows.find((t) => t.index === state.task.index) ?? state.task;
}

/** Zooms the waterfall to [fromMs, toMs]; the whole run when the window covers it. Resolves once drawn. */
export async function zoom(fromMs, toMs) {
  if (!state.batch) return;
  state.window = normalizeWindow(fromMs, toMs);
  writeHash();
  drawOverview();
  renderWindowText();
  const gen = ++viewGeneration;
  const win = state.window;
  const view = win ? await source.timeline(state.id, win, VIEW_BINS) : state.overview;
  if (gen !== viewGeneration) return;
  setView(view);
  if (!state.task) renderTaskDetail();
  $("wf-scroll").scrollTop = 0;
  drawWaterfall();
  renderWaterfallNote();
}

function normalizeWindow(a, b) {
  const span = runSpan();
  const from = Math.max(0, Math.min(a, b));
  const to = Math.max(a, b);
  if (!Number.isFinite(from) || !(to > from)) return null;
  if (from <= 0 && to >= span) return null;
  const round = (v) => Math.round(v * 1000) / 1000;
  return { from: round(from), to: round(Math.min(to, Math.max(span, from + 0.001))) };
}

/** Shows task `index` in the task pane, if a row of the current window (or the whole run) holds it. */
export function selectTask(index) {
  const row = state.rows.find((t) => t.index === index) ?? state.overview?.tasks?.find((t) => t.index === index);
  state.task = row ?? null;
  renderTaskDetail(index);
  if (row) scrollToTask(row);
  drawWaterfall();
  return row != null;
}

/** Shows why the batch could not be read, in place of its detail. */
export function showError(e) {
  state.error = e;
  $("detail").hidden = true;
  $("empty").hidden = false;
  $("empty").querySelector("h1").textContent = e.status === 404 ? "No such batch" : "Could not load the batch";
  $("empty-note").textContent = e.message;
}

/** Draws the whole detail from the state: the DOM parts, then the canvases. */
function render() {
  if (!state.batch) return;
  $("empty").hidden = true;
  $("detail").hidden = false;
  renderHeader();
  renderCards();
  renderMaps();
  renderLost();
  renderVerdict();
  renderTables();
  renderWindowText();
  renderWaterfallNote();
  renderLatencyText();
  renderTaskDetail(state.task?.index);
  drawAll();
}

export function drawAll() {
  drawOverview();
  drawWaterfall();
  drawLatency();
}

/** Switches the latency panel between duration and time to first byte. */
export async function setMetric(metric) {
  if (metric === state.metric || !state.batch) return;
  state.metric = metric;
  renderLatencyText();
  const gen = generation;
  const latency = await source.latency(state.id, metric);
  if (gen !== generation || metric !== state.metric) return;
  state.latency = latency;
  renderLatencyText();
  drawLatency();
}
