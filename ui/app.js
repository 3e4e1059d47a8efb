// fanout's page, its entry: served at /ui (it reads the API) or inlined into a report (its own data).

// The modules, each a view or a part the views share: format.js and dom.js (helpers), state.js
// (the page's state, its data source, the URL hash), api.js and report.js (the two data sources,
// behind one interface, so the drawing code never knows which it has), sse.js and live.js
// (following a running batch), sidebar.js, cards.js, tables.js and task.js (the DOM views),
// canvas.js, timeline.js, waterfall.js and latency.js (the canvases), batch.js (reading and
// drawing the open batch), and this one: opening a batch, the layout, start-up.
//
// Tasks are drawn on canvases, never as elements: a 100,000-task batch must stay a small page.
// Everything shown comes from the server (or the report), so a reload loses nothing.
//
// The modules keep to a form that lets src/ui.rs inline them into a report as one script: their
// imports are single lines at the top, named, without `as`; they export only declarations
// (`export function`, `export const`, `export let`, `export class`); no two declare one name.

import { serverSource, wireTokenForm } from "./api.js";
import { drawAll, refresh, selectTask, setMetric, showError, zoom } from "./batch.js";
import { FONT, useFont } from "./canvas.js";
import { $ } from "./dom.js";
import { startFollowing, stopFollowing } from "./live.js";
import { reportSource } from "./report.js";
import { collapseSidebarOnPhone, loadList, markActiveRow, setSidebarOpen } from "./sidebar.js";
import { sseParser } from "./sse.js";
import { generation, nextGeneration, parseHash, redraws, sameWindow, source, state, useSource, writeHash } from "./state.js";
import { wireBrush } from "./timeline.js";
import { wireWaterfall } from "./waterfall.js";

/** How often the sidebar's list is read again while the page is in view. */
const LIST_EVERY_MS = 5000;

/** Opens batch `id` at window `win`: reads it, draws it, and follows it while it runs. */
async function openBatch(id, win) {
  stopFollowing();
  const gen = nextGeneration();
  Object.assign(state, { id, window: win, batch: null, overview: null, view: null, rows: [], latency: null, task: null, progress: null, error: null });
  markActiveRow();
  collapseSidebarOnPhone();
  writeHash();
  try {
    await refresh(gen);
  } catch (e) {
    if (gen === generation) showError(e);
    return;
  }
  if (gen === generation && !state.batch.finished_at && source.follow) startFollowing(id, gen);
}

/** A hash typed, pasted or gone back to: open its batch, or zoom to its window. */
function onHashChange() {
  const { id, window: win } = parseHash();
  if (!id) return;
  if (id !== state.id) openBatch(id, win);
  else if (!sameWindow(win, state.window)) zoom(win?.from ?? 0, win?.to ?? Infinity);
}

/** The sidebar's toggle on phones, the latency metric's buttons, and redrawing on resize. */
function wireLayout() {
  $("side-toggle").addEventListener("click", () => setSidebarOpen($("sidebar").classList.contains("collapsed")));
  for (const b of document.querySelectorAll(".toggle button")) b.addEventListener("click", () => setMetric(b.dataset.metric));
  let pending = false;
  const redraw = () => {
    if (pending) return;
    pending = true;
    requestAnimationFrame(() => {
      pending = false;
      if (state.batch) drawAll();
    });
  };
  new ResizeObserver(redraw).observe($("detail"));
  // A move to a screen of another devicePixelRatio resizes nothing, yet needs a redraw.
  const watchDpr = () => matchMedia(`(resolution: ${window.devicePixelRatio}dppx)`).addEventListener("change", () => {
    redraw();
    watchDpr();
  }, { once: true });
  watchDpr();
}

// Start-up: the server's page reads the API; a report reads its embedded data and asks for nothing.

let listTimer = null;

function startServer() {
  loadList().then(() => {
    if (!parseHash().id && state.list.length && !state.id) {
      // Nothing asked for: open the newest batch, as a dashboard would.
      openBatch(state.list[0].id, null);
    }
  });
  const { id, window: win } = parseHash();
  if (id) openBatch(id, win);
  clearInterval(listTimer);
  listTimer = setInterval(() => {
    if (document.visibilityState === "visible") loadList();
  }, LIST_EVERY_MS);
}

function startReport(data) {
  state.mode = "report";
  document.body.classList.add("report");
  $("brand-note").textContent = "report";
  loadList();
  const { id, window: win } = parseHash();
  openBatch(id && id === data.batch.id ? id : data.batch.id, id === data.batch.id ? win : null);
}

function main() {
  useFont(getComputedStyle(document.body).fontFamily || FONT);
  const embedded = document.getElementById("fanout-report");
  wireBrush(zoom);
  wireWaterfall(selectTask);
  wireLayout();
  window.addEventListener("hashchange", onHashChange);
  window.__fanout = {
    state,
    zoom,
    selectTask,
    sseParser,
    get redraws() {
      return redraws;
    },
  };
  if (embedded) {
    // A report: everything comes from the embedded JSON and no request is made, not even one.
    const data = JSON.parse(embedded.textContent);
    useSource(reportSource(data));
    startReport(data);
    return;
  }
  useSource(serverSource());
  wireTokenForm(startServer);
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible") loadList();
  });
  startServer();
}

main();
