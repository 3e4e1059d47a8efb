// fanout's page: served at /ui (it reads the API) or inlined into an HTML report (it reads the embedded data and makes no request).
//
// A tour, top to bottom: formatting; the two data sources (the server's API, a report's embedded
// data) behind one interface, so the drawing code never knows which it has; page state and the URL
// hash; DOM rendering (sidebar, header, cards, tables, task pane); canvas drawing (overview with
// its brush, waterfall, latency histogram and percentile curve); following a running batch over
// server-sent events; start-up.
//
// Tasks are drawn on canvases, never as elements: a 100,000-task batch must stay a small page.
// Everything shown comes from the server (or the report), so a reload loses nothing.

// ---------------------------------------------------------------------------------------------
// Constants

const OVERVIEW_BINS = 200;
const VIEW_BINS = 200;
const LIST_LIMIT = 50;
const LIST_EVERY_MS = 5000;
/** Least time between two live refreshes: at most four a second, whatever the event rate. */
const LIVE_GAP_MS = 250;
/** Rows kept in a table; a batch of a thousand jobs must not make a page of a thousand rows. */
const TABLE_ROWS = 200;
const TOKEN_KEY = "fanout-token";
const PHASES = ["dns_ms", "connect_ms", "tls_ms", "send_ms", "wait_ms", "receive_ms"];

/** DevTools' network colors for the phases, and one color per task status. */
const COLOR = {
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

// ---------------------------------------------------------------------------------------------
// Formatting: the cards' formats are part of the page's contract with its tests.

const fmtMs = (v) => (v == null ? "—" : v.toFixed(2));
const fmtInt = (v) => (v == null ? "—" : String(Math.round(v)));
const fmtRate = (v) => (v == null ? "—" : v.toFixed(1));
const fmtPct = (v) => (v == null ? "—" : `${(v * 100).toFixed(2)}%`);
const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
const pad2 = (n) => String(n).padStart(2, "0");

/** UTC, never local time nor "2 min ago": a report must look the same wherever and whenever opened. */
function fmtDateTime(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  return `${MONTHS[d.getUTCMonth()]} ${d.getUTCDate()} ${pad2(d.getUTCHours())}:${pad2(d.getUTCMinutes())}:${pad2(d.getUTCSeconds())} UTC`;
}

function fmtClock(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  return `${pad2(d.getUTCHours())}:${pad2(d.getUTCMinutes())}:${pad2(d.getUTCSeconds())}`;
}

/** A duration for prose: 850 ms, 12.4 s, 3 min 5 s. */
function fmtSpan(ms) {
  if (ms == null) return "—";
  if (ms === 0) return "0";
  if (ms < 1000) return `${ms < 10 ? ms.toFixed(2) : ms.toFixed(0)} ms`;
  if (ms < 60000) return `${(ms / 1000).toFixed(ms < 10000 ? 2 : 1)} s`;
  return `${Math.floor(ms / 60000)} min ${Math.round((ms % 60000) / 1000)} s`;
}

/** An axis label, with as many decimals as the tick step needs; seconds once the axis reaches 2 s. */
function fmtTick(v, step, max) {
  if (max >= 2000) {
    const digits = Math.max(0, -Math.floor(Math.log10(step / 1000) + 1e-9));
    return `${(v / 1000).toFixed(digits)} s`;
  }
  const digits = Math.max(0, -Math.floor(Math.log10(step) + 1e-9));
  return `${v.toFixed(digits)} ms`;
}

/** A log axis's label: 0.5, 2, 50, 1s. */
function fmtLogTick(v) {
  if (v >= 1000) return `${+(v / 1000).toPrecision(3)}s`;
  return String(+v.toPrecision(3));
}

function errorRate(s) {
  return s.tasks ? (s.failed + s.timed_out) / s.tasks : 0;
}

function shortId(id) {
  // Ids are UUIDv7: the first characters are the creation time, alike for batches made together.
  return `…${id.slice(-8)}`;
}

function isErrorTask(t) {
  return t.error != null || t.status === "failed" || t.status === "timed_out";
}

// ---------------------------------------------------------------------------------------------
// Data sources. Both answer the same shapes; a report's answers are computed from its data.

class ApiError extends Error {
  constructor(status, message, code) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

function token() {
  try {
    return sessionStorage.getItem(TOKEN_KEY);
  } catch {
    return null;
  }
}

function authHeaders(extra = {}) {
  const t = token();
  return t ? { ...extra, Authorization: `Bearer ${t}` } : extra;
}

/** GETs JSON from the API; a 401 shows the token form (and still throws, so callers stop). */
async function getJson(path, signal) {
  const res = await fetch(path, { headers: authHeaders({ Accept: "application/json" }), signal });
  if (res.status === 401) {
    showTokenForm();
    throw new ApiError(401, "a valid bearer token is required", "unauthorized");
  }
  if (!res.ok) {
    let problem = {};
    try {
      problem = await res.json();
    } catch {
      // Not problem+json: the status says enough.
    }
    throw new ApiError(res.status, problem.detail ?? `HTTP ${res.status}`, problem.code);
  }
  return res.json();
}

const num = (v) => String(+v.toFixed(3));

function serverSource() {
  return {
    kind: "server",
    list: () => getJson(`/batches?limit=${LIST_LIMIT}`),
    // Never without results=none: a 100,000-task batch's full JSON is megabytes.
    batch: (id) => getJson(`/batches/${encodeURIComponent(id)}?results=none`),
    timeline: (id, win, bins) => {
      const range = win ? `&from_ms=${num(win.from)}&to_ms=${num(win.to)}` : "";
      return getJson(`/batches/${encodeURIComponent(id)}/timeline?bins=${bins}${range}`);
    },
    latency: (id, metric) => getJson(`/batches/${encodeURIComponent(id)}/latency?metric=${metric}`),
    follow: followEvents,
    jsonHref: (batch) => `/batches/${encodeURIComponent(batch.id)}`,
  };
}

/** A report's data: `{batch, timeline, latency: {duration, ttfb}}`. Nothing here touches the network. */
function reportSource(data) {
  const batch = withoutTaskLists(data.batch);
  const timeline = data.timeline ?? emptyTimeline();
  const latency = data.latency ?? {};
  let href = null;
  return {
    kind: "report",
    list: async () => ({ items: [batch], next_cursor: null }),
    batch: async (id) => {
      if (id !== batch.id) throw new ApiError(404, `this report holds batch ${batch.id}, not ${id}`);
      return batch;
    },
    timeline: async (_id, win, bins) => windowOf(timeline, win, bins),
    latency: async (_id, metric) => latency[metric] ?? emptyLatency(metric),
    follow: null,
    jsonHref: () => {
      // A blob: URL is made here, in memory; it is only opened when the link is clicked.
      href ??= URL.createObjectURL(new Blob([JSON.stringify(data.batch, null, 2)], { type: "application/json" }));
      return href;
    },
  };
}

function withoutTaskLists(batch) {
  const { results: _r, done: _d, ...rest } = batch;
  return rest;
}

function emptyTimeline() {
  return { span_ms: 0, from_ms: 0, to_ms: 0, bin_ms: 0, bins: [], tasks_in_window: 0, row_limit: 0, results: "none", tasks: [] };
}

function emptyLatency(metric) {
  return { metric, count: 0, min_ms: null, max_ms: null, mean_ms: null, buckets: [], percentiles: [] };
}

/**
 * A window of a whole-run timeline, as the server would answer it: its bins merged down to at
 * most `bins`, its task rows those that started in the window. Bins cannot be split, so a
 * narrow window of a report is as fine as the report's own bins.
 */
function windowOf(tl, win, bins) {
  const from = win ? win.from : tl.from_ms ?? 0;
  const to = win ? win.to : tl.to_ms ?? tl.span_ms;
  const inside = tl.bins.filter((b) => b.start_ms < to && b.start_ms + tl.bin_ms > from);
  const group = Math.max(1, Math.ceil(inside.length / bins));
  const merged = [];
  for (let i = 0; i < inside.length; i += group) merged.push(mergeBins(inside.slice(i, i + group)));
  const rows = tl.tasks ? tl.tasks.filter((t) => t.start_ms >= from && t.start_ms < to) : null;
  const started = merged.reduce((n, b) => n + b.started, 0);
  return { ...tl, from_ms: from, to_ms: to, bin_ms: tl.bin_ms * group, bins: merged, tasks: rows, tasks_in_window: rows ? rows.length : started };
}

function mergeBins(part) {
  const merged = { start_ms: part[0].start_ms, started: 0, ended: 0, in_flight: 0, errors: 0 };
  for (const b of part) {
    merged.started += b.started;
    merged.ended += b.ended;
    merged.errors += b.errors;
    // The peak, not the mean: a spike of in-flight tasks must survive the zoom-out.
    merged.in_flight = Math.max(merged.in_flight, b.in_flight);
  }
  return merged;
}

// ---------------------------------------------------------------------------------------------
// Page state. One object, exposed to tests as window.__fanout.state.

const state = {
  /** "server" or "report". */
  mode: "server",
  list: [],
  listError: null,
  /** The open batch's id, its view without task lists, and its progress from events. */
  id: null,
  batch: null,
  progress: null,
  /** The whole run's timeline (the overview), and the brush window's (the waterfall). */
  overview: null,
  view: null,
  /** The brush window in ms from the batch's start, or null for the whole run. */
  window: null,
  /** Waterfall rows: the view's tasks sorted by start. */
  rows: [],
  metric: "duration",
  latency: null,
  /** The task shown in the task pane: a row of a timeline answer. */
  task: null,
  live: false,
  error: null,
  firstDrawMs: null,
};

let source = null;
let redraws = 0;
/** Bumped when another batch opens, so answers for the one before are dropped. */
let generation = 0;
let viewGeneration = 0;
let following = null;

// ---------------------------------------------------------------------------------------------
// The URL hash: #/batches/ID?from=..&to=..

function parseHash() {
  const m = location.hash.match(/^#\/batches\/([^?]+)(?:\?(.*))?$/);
  if (!m) return { id: null, window: null };
  const q = new URLSearchParams(m[2] ?? "");
  const from = parseFloat(q.get("from"));
  const to = parseFloat(q.get("to"));
  const win = Number.isFinite(from) && Number.isFinite(to) && to > from ? { from, to } : null;
  return { id: decodeURIComponent(m[1]), window: win };
}

function hashFor(id, win) {
  const range = win ? `?from=${num(win.from)}&to=${num(win.to)}` : "";
  return `#/batches/${encodeURIComponent(id)}${range}`;
}

/** Replaces the hash without a new history entry (the brush moves often). */
function writeHash() {
  if (!state.id) return;
  const hash = hashFor(state.id, state.window);
  if (location.hash === hash) return;
  try {
    history.replaceState(null, "", hash);
  } catch {
    // A file:// page may refuse replaceState; location.replace keeps the hash change in-page.
    location.replace(hash);
  }
}

function onHashChange() {
  const { id, window: win } = parseHash();
  if (!id) return;
  if (id !== state.id) openBatch(id, win);
  else if (!sameWindow(win, state.window)) zoom(win?.from ?? 0, win?.to ?? Infinity);
}

function sameWindow(a, b) {
  return (a == null && b == null) || (a != null && b != null && a.from === b.from && a.to === b.to);
}

// ---------------------------------------------------------------------------------------------
// Small DOM helpers

const $ = (id) => document.getElementById(id);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v == null || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children) if (c != null) node.append(c);
  return node;
}

function statusPill(status) {
  return el("span", { class: `pill status-${status}`, text: status.replace("_", " ") });
}

// ---------------------------------------------------------------------------------------------
// Sidebar

async function loadList() {
  try {
    const page = await source.list();
    state.list = page.items ?? [];
    state.listError = null;
  } catch (e) {
    state.listError = e;
  }
  renderList();
}

function renderList() {
  const list = $("batch-list");
  list.replaceChildren(...state.list.slice(0, LIST_LIMIT).map(batchRow));
  const note = $("list-note");
  if (state.listError) note.textContent = state.listError.status === 401 ? "A token is needed." : `Could not list batches: ${state.listError.message}`;
  else if (!state.list.length) note.textContent = "No batches yet: POST /batches to run one.";
  else note.textContent = "";
  $("side-toggle").textContent = `Batches (${state.list.length})`;
}

function batchRow(b) {
  const s = b.summary;
  const p99 = s.duration_ms?.p99;
  const rate = errorRate(s);
  const link = el("a", { href: hashFor(b.id, null) },
    el("span", { class: "row-top" },
      el("span", { class: "row-name", title: b.label ?? b.id, text: b.label || shortId(b.id) }),
      statusPill(b.status)),
    el("span", { class: "row-stats" },
      el("span", { text: `${fmtInt(s.tasks)} tasks` }),
      el("span", { text: p99 == null ? "p99 —" : `p99 ${fmtMs(p99)} ms` }),
      el("span", { class: rate > 0 ? "bad" : null, text: `${fmtPct(rate)} err` }),
      el("span", { class: "row-time", title: fmtDateTime(b.created_at), text: fmtClock(b.created_at).slice(0, 5) })));
  return el("li", { "data-testid": "batch-row", "data-id": b.id, class: b.id === state.id ? "active" : null }, link);
}

function markActiveRow() {
  for (const row of $("batch-list").children) row.classList.toggle("active", row.dataset.id === state.id);
}

// ---------------------------------------------------------------------------------------------
// Opening a batch, refreshing it, zooming

async function openBatch(id, win) {
  stopFollowing();
  const gen = ++generation;
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

/** Reads the batch, both timelines and the latency again, then draws; answers for an older batch are dropped. */
async function refresh(gen = generation) {
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

/** Keeps the open batch's sidebar row as fresh as its detail, between two reads of the list. */
function updateListRow(batch) {
  const i = state.list.findIndex((b) => b.id === batch.id);
  if (i < 0) return;
  state.list[i] = batch;
  const row = [...$("batch-list").children].find((li) => li.dataset.id === batch.id);
  row?.replaceWith(batchRow(batch));
}

function setView(view) {
  state.view = view;
  state.rows = view.tasks ? view.tasks.slice().sort((a, b) => a.start_ms - b.start_ms || a.index - b.index) : [];
  if (state.task) state.task = state.rows.find((t) => t.index === state.task.index) ?? state.task;
}

/** Zooms the waterfall to [fromMs, toMs]; the whole run when the window covers it. Resolves once drawn. */
async function zoom(fromMs, toMs) {
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

function runSpan() {
  return state.overview?.span_ms ?? state.batch?.wall_ms ?? 0;
}

/** Shows task `index` in the task pane, if a row of the current window (or the whole run) holds it. */
function selectTask(index) {
  const row = state.rows.find((t) => t.index === index) ?? state.overview?.tasks?.find((t) => t.index === index);
  state.task = row ?? null;
  renderTaskDetail(index);
  if (row) scrollToTask(row);
  drawWaterfall();
  return row != null;
}

function showError(e) {
  state.error = e;
  $("detail").hidden = true;
  $("empty").hidden = false;
  $("empty").querySelector("h1").textContent = e.status === 404 ? "No such batch" : "Could not load the batch";
  $("empty-note").textContent = e.message;
}

// ---------------------------------------------------------------------------------------------
// Rendering the detail (DOM)

function render() {
  if (!state.batch) return;
  $("empty").hidden = true;
  $("detail").hidden = false;
  renderHeader();
  renderCards();
  renderMaps();
  renderVerdict();
  renderTables();
  renderWindowText();
  renderWaterfallNote();
  renderLatencyText();
  renderTaskDetail(state.task?.index);
  drawAll();
}

function renderHeader() {
  const b = state.batch;
  $("title").textContent = b.label || b.id;
  const status = $("status");
  status.textContent = b.status;
  status.className = `pill status-${b.status}`;
  // An unlabelled batch's title is its id already.
  $("batch-id").textContent = b.label ? b.id : "";
  $("batch-time").textContent = `${b.mode} · ${fmtDateTime(b.started_at ?? b.created_at)} · ${fmtSpan(b.wall_ms)}`;
  const link = $("json-link");
  link.href = source.jsonHref(b);
  if (source.kind === "report") link.download = `batch-${b.id}.json`;
  $("live").hidden = !state.live;
  $("header-throughput").textContent = `${fmtRate(b.summary.throughput_per_s)} /s`;
  renderProgress();
}

function renderProgress() {
  const s = state.batch.summary;
  // The batch is read at most four times a second; progress events in between are newer.
  const fromEvents = state.progress && state.batch.finished_at == null ? state.progress : null;
  const tasks = fromEvents?.tasks ?? s.tasks;
  const ended = Math.max(fromEvents?.ended ?? 0, s.tasks - s.pending);
  $("progress-text").textContent = `${ended} / ${tasks} ended`;
  $("progress-fill").style.width = `${tasks ? (100 * ended) / tasks : 0}%`;
}

const CARDS = [
  ["card-p50", (s) => s.duration_ms?.p50, fmtMs],
  ["card-p95", (s) => s.duration_ms?.p95, fmtMs],
  ["card-p99", (s) => s.duration_ms?.p99, fmtMs],
  ["card-max", (s) => s.duration_ms?.max, fmtMs],
  ["card-tasks", (s) => s.tasks, fmtInt],
  ["card-succeeded", (s) => s.succeeded, fmtInt],
  ["card-failed", (s) => s.failed, fmtInt, true],
  ["card-timed-out", (s) => s.timed_out, fmtInt, true],
  ["card-throughput", (s) => s.throughput_per_s, fmtRate],
  ["card-error-rate", errorRate, fmtPct, true],
];

function renderCards() {
  const s = state.batch.summary;
  for (const [testid, pick, format, warn] of CARDS) {
    const node = document.querySelector(`[data-testid="${testid}"]`);
    const value = pick(s);
    node.textContent = format(value);
    node.dataset.value = value == null ? "" : String(value);
    node.closest(".card").classList.toggle("bad", Boolean(warn && value > 0));
  }
}

function renderMaps() {
  const s = state.batch.summary;
  const statuses = Object.entries(s.http_status ?? {}).sort(([a], [b]) => a.localeCompare(b));
  $("http-status").replaceChildren(...(statuses.length
    ? statuses.slice(0, 20).map(([code, n]) => chip(code, n, `http-${code[0]}xx`))
    : [el("span", { class: "muted", text: "none" })]));
  const errors = Object.entries(s.errors ?? {}).sort(([, a], [, b]) => b - a);
  $("errors").replaceChildren(...(errors.length
    ? errors.slice(0, 20).map(([code, n]) => chip(code, n, "error", s.first_errors?.[code]))
    : [el("span", { class: "muted", text: "none" })]));
}

function chip(key, count, cls, title) {
  return el("span", { class: `chip ${cls}`, title, "data-key": key, "data-value": count },
    el("span", { class: "chip-key", text: key }), el("span", { class: "chip-count", text: fmtInt(count) }));
}

function renderVerdict() {
  const v = state.batch.verdict;
  $("verdict").hidden = !v;
  if (!v) return;
  const failed = v.checks.filter((c) => !c.passed).length;
  $("verdict").className = `verdict ${v.passed ? "passed" : "failed"}`;
  $("verdict-head").textContent = v.passed
    ? `Thresholds met: ${v.checks.length} of ${v.checks.length} checks passed`
    : `Thresholds failed: ${failed} of ${v.checks.length} checks failed`;
  fillTable($("verdict-checks"), [
    { key: "name", label: "check", value: (c) => c.name, text: true },
    { key: "limit", label: "limit", value: (c) => c.limit, fmt: (v) => String(+v.toFixed(3)) },
    { key: "actual", label: "actual", value: (c) => c.actual, fmt: (v) => (v == null ? "—" : String(+v.toFixed(3))) },
    { key: "passed", label: "result", value: (c) => (c.passed ? "passed" : "failed"), text: true, cls: (c) => (c.passed ? "good" : "bad") },
    { key: "detail", label: "detail", value: (c) => c.detail ?? "", text: true, cls: () => "wrap" },
  ], v.checks.map((c) => [c.name, c]));
}

function renderTables() {
  const s = state.batch.summary;
  const jobs = s.by_job ? Object.entries(s.by_job) : [];
  $("by-job-panel").hidden = !jobs.length;
  if (jobs.length) fillTable($("by-job"), JOB_COLUMNS, jobs);
  const stages = s.stages ?? [];
  $("by-stage-panel").hidden = !stages.length;
  if (stages.length) fillTable($("by-stage"), STAGE_COLUMNS, stages.map((st) => [String(st.index), st]));
  const shards = state.batch.shards ?? [];
  $("shards-panel").hidden = !shards.length;
  if (shards.length) fillTable($("shards"), SHARD_COLUMNS, shards.map((sh) => [String(sh.index), sh]));
}

const pct = (key) => (r) => r.duration_ms?.[key];
const codes = (map) => Object.entries(map ?? {}).map(([k, n]) => `${k}: ${n}`).join(", ");

const JOB_COLUMNS = [
  { key: "job", label: "job", value: (_r, key) => key, text: true, cls: () => "name" },
  { key: "tasks", label: "tasks", value: (r) => r.tasks, fmt: fmtInt },
  { key: "succeeded", label: "ok", value: (r) => r.succeeded, fmt: fmtInt },
  { key: "failed", label: "failed", value: (r) => r.failed, fmt: fmtInt, cls: (r) => (r.failed ? "bad" : null) },
  { key: "timed_out", label: "timed out", value: (r) => r.timed_out, fmt: fmtInt, cls: (r) => (r.timed_out ? "bad" : null) },
  { key: "error_rate", label: "err %", value: errorRate, fmt: fmtPct },
  { key: "p50", label: "p50 ms", value: pct("p50"), fmt: fmtMs },
  { key: "p90", label: "p90 ms", value: pct("p90"), fmt: fmtMs },
  { key: "p95", label: "p95 ms", value: pct("p95"), fmt: fmtMs },
  { key: "p99", label: "p99 ms", value: pct("p99"), fmt: fmtMs },
  { key: "max", label: "max ms", value: pct("max"), fmt: fmtMs },
  { key: "throughput", label: "/s", value: (r) => r.throughput_per_s, fmt: fmtRate },
  { key: "http_status", label: "HTTP", value: (r) => codes(r.http_status), text: true },
  { key: "errors", label: "errors", value: (r) => codes(r.errors), text: true, cls: (r) => (Object.keys(r.errors ?? {}).length ? "bad" : null) },
];

const STAGE_COLUMNS = [
  { key: "index", label: "stage", value: (r) => r.index + 1, fmt: fmtInt },
  { key: "window", label: "from – to", value: (r) => `${fmtSpan(r.start_ms)} – ${fmtSpan(r.end_ms)}`, text: true },
  { key: "tasks", label: "tasks", value: (r) => r.tasks, fmt: fmtInt },
  { key: "succeeded", label: "ok", value: (r) => r.succeeded, fmt: fmtInt },
  { key: "throughput", label: "/s", value: (r) => r.throughput_per_s, fmt: fmtRate },
  { key: "p50", label: "p50 ms", value: pct("p50"), fmt: fmtMs },
  { key: "p95", label: "p95 ms", value: pct("p95"), fmt: fmtMs },
  { key: "p99", label: "p99 ms", value: pct("p99"), fmt: fmtMs },
  { key: "errors", label: "errors", value: (r) => codes(r.errors), text: true, cls: (r) => (Object.keys(r.errors ?? {}).length ? "bad" : null) },
];

const SHARD_COLUMNS = [
  { key: "index", label: "shard", value: (r) => r.index, fmt: fmtInt },
  { key: "tasks", label: "tasks", value: (r) => r.tasks, fmt: fmtInt },
  { key: "status", label: "status", value: (r) => r.status, text: true, cls: (r) => `status-text-${r.status}` },
  { key: "instance_id", label: "instance", value: (r) => r.instance_id ?? "—", text: true, cls: () => "mono" },
  { key: "attempt", label: "attempt", value: (r) => r.attempt, fmt: fmtInt },
  { key: "started_at", label: "started", value: (r) => fmtClock(r.started_at), text: true },
  { key: "finished_at", label: "finished", value: (r) => fmtClock(r.finished_at), text: true },
];

/** Fills a table: rows are [key, record]; each cell says its column and its raw value. */
function fillTable(table, columns, rows) {
  const head = el("thead", {}, el("tr", {}, ...columns.map((c) => el("th", { class: c.text ? "text" : null, text: c.label }))));
  const body = el("tbody");
  for (const [key, r] of rows.slice(0, TABLE_ROWS)) {
    const cells = columns.map((c) => {
      const v = c.value(r, key);
      const shown = c.text ? String(v) : c.fmt(v);
      const cls = [c.text ? "text" : null, c.cls?.(r)].filter(Boolean).join(" ") || null;
      return el("td", { "data-col": c.key, "data-value": v == null ? "" : v, class: cls, title: c.text && shown.length > 24 ? shown : null, text: shown });
    });
    body.append(el("tr", { "data-key": key }, ...cells));
  }
  if (rows.length > TABLE_ROWS) {
    body.append(el("tr", { class: "more" }, el("td", { colspan: columns.length, text: `and ${rows.length - TABLE_ROWS} more (see the JSON)` })));
  }
  table.replaceChildren(head, body);
}

function renderWindowText() {
  const w = state.window;
  $("window-text").textContent = w ? `${fmtSpan(w.from)} – ${fmtSpan(w.to)}` : `whole run · ${fmtSpan(runSpan())}`;
  $("reset-zoom").hidden = !w;
}

/** Says when the waterfall shows bins instead of rows, and why. */
function renderWaterfallNote() {
  const note = $("wf-note");
  const v = state.view;
  let text = "";
  if (v && v.tasks == null) {
    text = source.kind === "report"
      ? `This report holds no task rows for this window (${v.tasks_in_window} tasks in window): the bars show how many started.`
      : `zoom in to see tasks (${v.tasks_in_window} in window; rows are drawn up to ${v.row_limit})`;
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

function renderLatencyText() {
  const l = state.latency;
  $("latency-text").textContent = l && l.count
    ? `${l.count} tasks · min ${fmtMs(l.min_ms)} · mean ${fmtMs(l.mean_ms)} · max ${fmtMs(l.max_ms)} ms`
    : "";
  for (const b of document.querySelectorAll(".toggle button")) b.setAttribute("aria-pressed", String(b.dataset.metric === state.metric));
}

async function setMetric(metric) {
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

// ---------------------------------------------------------------------------------------------
// The task pane

function renderTaskDetail(wanted) {
  const pane = $("task-detail");
  const t = state.task;
  if (!t) {
    const text = wanted == null ? "Click a task in the waterfall to see its timing." : `Task ${wanted} is not among this window's rows.`;
    pane.replaceChildren(el("p", { class: "muted", text }));
    return;
  }
  const end = t.end_ms;
  const fields = [
    ["index", "index", String(t.index)],
    ["id", "id", t.id ?? "—"],
    ["http_status", "HTTP", t.http_status == null ? "—" : String(t.http_status)],
    ["start_ms", "start", `${fmtMs(t.start_ms)} ms`],
    ["end_ms", "end", end == null ? "running" : `${fmtMs(end)} ms`],
    ["duration_ms", "duration", end == null ? "—" : `${fmtMs(end - t.start_ms)} ms`],
    ["queued_ms", "queued", t.queued_ms == null ? "—" : `${fmtMs(t.queued_ms)} ms`],
    ["reused", "connection", t.reused == null ? "—" : t.reused ? "reused" : "new"],
  ];
  if (t.warmup) fields.push(["warmup", "warm-up", "yes"]);
  const list = el("dl", { class: "fields" });
  for (const [key, label, value] of fields) list.append(el("dt", { text: label }), el("dd", { "data-field": key, text: value }));
  const parts = [
    el("div", { class: "task-head" }, el("h3", { text: `Task ${t.index}` }), statusPill(t.status)),
    list,
  ];
  if (t.phases) parts.push(phaseList(t.phases));
  if (t.error) {
    parts.push(el("div", { class: "task-error", "data-field": "error" },
      el("span", { class: "error-code", text: t.error.code }), el("span", { text: t.error.message })));
  }
  pane.replaceChildren(...parts);
}

function phaseList(phases) {
  const total = PHASES.reduce((n, p) => n + (phases[p] ?? 0), 0) || 1;
  const list = el("ul", { class: "phases" });
  for (const p of PHASES) {
    const ms = phases[p] ?? 0;
    const bar = el("span", { class: "phase-bar" }, el("span", { class: `phase-fill key-${p.replace("_ms", "")}` }));
    bar.firstChild.style.width = `${Math.max(ms > 0 ? 2 : 0, (100 * ms) / total)}%`;
    list.append(el("li", { "data-phase": p, "data-value": ms },
      el("span", { class: "phase-name", text: p.replace("_ms", "") }), bar, el("span", { class: "phase-ms", text: fmtMs(ms) })));
  }
  return list;
}

// ---------------------------------------------------------------------------------------------
// Canvas basics

let FONT = "system-ui, sans-serif";

/** Sizes a canvas's backing store to its CSS box times devicePixelRatio, so lines stay crisp on HiDPI. */
function fitCanvas(canvas) {
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

function linear(d0, d1, r0, r1) {
  const k = d1 === d0 ? 0 : (r1 - r0) / (d1 - d0);
  const f = (v) => r0 + (v - d0) * k;
  f.invert = (x) => (k === 0 ? d0 : d0 + (x - r0) / k);
  return f;
}

function logScale(d0, d1, r0, r1) {
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

function ticks(d0, d1, count) {
  const step = niceStep(d1 - d0, count);
  const out = [];
  for (let v = Math.ceil(d0 / step) * step; v <= d1 + step * 1e-9; v += step) out.push(+v.toPrecision(12));
  return { step, values: out };
}

function centerText(ctx, w, h, text) {
  ctx.fillStyle = COLOR.axis;
  ctx.textAlign = "center";
  ctx.fillText(text, w / 2, h / 2);
  ctx.textAlign = "left";
}

function drawAll() {
  drawOverview();
  drawWaterfall();
  drawLatency();
}

/** Time ticks along a horizontal axis at `y`, labels below (or above) it, grid lines over `grid`. */
function drawTimeAxis(ctx, sx, d0, d1, y, grid, labelsAbove = false) {
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
function drawBins(ctx, box, tl, sx, alpha = 1) {
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

// ---------------------------------------------------------------------------------------------
// The overview strip and its brush

const OV = { left: 8, right: 8, top: 16, bottom: 20 };
let drag = null;

function overviewScale(w) {
  return linear(0, Math.max(runSpan(), 1e-6), OV.left, w - OV.right);
}

function drawOverview() {
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
  ctx.fillText(`in flight ≤ ${peaks.maxFlight}`, w - OV.right, 7);
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

function wireBrush() {
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
    if (Math.abs(e.clientX - d.x) >= 4) zoom(d.a, d.b);
    else drawOverview();
  };
  canvas.addEventListener("pointerup", finish);
  canvas.addEventListener("pointercancel", () => {
    drag = null;
    drawOverview();
  });
  canvas.addEventListener("dblclick", () => zoom(0, Infinity));
  $("reset-zoom").addEventListener("click", () => zoom(0, Infinity));
}

// ---------------------------------------------------------------------------------------------
// The waterfall

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

function drawWaterfall() {
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
  if (v.tasks == null) drawBadge(ctx, w, h, source.kind === "report" ? `${v.tasks_in_window} tasks in window; no rows in this report` : `zoom in to see tasks (${v.tasks_in_window} in window)`);
  else if (!L.n && v.results === "all") centerText(ctx, w, h + WF.axis, "No task ran in this window.");
  redraws += 1;
  if (state.firstDrawMs == null && state.batch) state.firstDrawMs = performance.now();
}

function drawBadge(ctx, w, h, text) {
  ctx.font = `600 12px ${FONT}`;
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

function scrollToTask(t) {
  const i = state.rows.indexOf(t);
  if (i < 0) return;
  const scroll = $("wf-scroll");
  const rect = $("waterfall").getBoundingClientRect();
  const L = waterfallLayout(rect.width, rect.height);
  const y = i * L.rowH;
  if (y < scroll.scrollTop || y > scroll.scrollTop + L.plotH - L.rowH) scroll.scrollTop = Math.max(0, y - L.plotH / 2);
}

function wireWaterfall() {
  const canvas = $("waterfall");
  const tip = el("div", { class: "tip", hidden: true });
  $("wf-scroll").parentElement.append(tip);
  canvas.addEventListener("click", (e) => {
    const t = rowAt(e);
    if (t) selectTask(t.index);
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

// ---------------------------------------------------------------------------------------------
// Latency: a histogram on a log axis, and the percentile curve HdrHistogram draws

const CH = { left: 44, right: 12, top: 10, bottom: 24 };

function drawLatency() {
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

// ---------------------------------------------------------------------------------------------
// Following a running batch: server-sent events over fetch (EventSource cannot send a token)

/**
 * An SSE parser without I/O: feed it text as it arrives, in pieces of any size; it calls
 * `onEvent({event, data, id})` for each complete event.
 */
function sseParser(onEvent) {
  let buffer = "";
  let event = "";
  let data = [];
  let id = null;
  const line = (text) => {
    if (text === "") {
      if (data.length) onEvent({ event: event || "message", data: data.join("\n"), id });
      event = "";
      data = [];
      return;
    }
    if (text[0] === ":") return;
    const colon = text.indexOf(":");
    const field = colon < 0 ? text : text.slice(0, colon);
    let value = colon < 0 ? "" : text.slice(colon + 1);
    if (value[0] === " ") value = value.slice(1);
    if (field === "event") event = value;
    else if (field === "data") data.push(value);
    else if (field === "id") id = value;
  };
  return (chunk) => {
    buffer += chunk;
    let start = 0;
    for (;;) {
      const nl = buffer.indexOf("\n", start);
      const cr = buffer.indexOf("\r", start);
      let end = nl < 0 ? cr : cr < 0 ? nl : Math.min(nl, cr);
      if (end < 0) break;
      // A CR at the end of this chunk may be the first half of a CRLF: wait for the next one.
      if (end === cr && end === buffer.length - 1) break;
      line(buffer.slice(start, end));
      start = end + (buffer[end] === "\r" && buffer[end + 1] === "\n" ? 2 : 1);
    }
    buffer = buffer.slice(start);
  };
}

/** Follows GET /batches/{id}/events until the batch event, reconnecting with Last-Event-ID. */
async function followEvents(id, onEvent, signal) {
  let lastId = null;
  for (;;) {
    const headers = authHeaders({ Accept: "text/event-stream" });
    if (lastId) headers["Last-Event-ID"] = lastId;
    let finished = false;
    try {
      const res = await fetch(`/batches/${encodeURIComponent(id)}/events`, { headers, signal, cache: "no-store" });
      // 204: finished, nothing left to send; 404: the batch is gone (deleted, or past retention).
      if (res.status === 204 || res.status === 404) return;
      if (res.status === 401) {
        showTokenForm();
        return;
      }
      if (res.ok) {
        const push = sseParser((ev) => {
          if (ev.id) lastId = ev.id;
          if (ev.event === "batch") finished = true;
          onEvent(ev);
        });
        const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          push(value);
        }
      }
    } catch (e) {
      if (signal.aborted) return;
    }
    if (finished || signal.aborted) return;
    // Dropped (a restart, a proxy's timeout, too many streams): read once, then go on where it stopped.
    onEvent({ event: "reconnect", data: "", id: lastId });
    await new Promise((r) => setTimeout(r, 1000));
    if (signal.aborted) return;
  }
}

function startFollowing(id, gen) {
  const abort = new AbortController();
  const live = { abort, timer: null, busy: null, dirty: false, last: 0 };
  following = live;
  state.live = true;
  $("live").hidden = false;
  const onEvent = (ev) => {
    if (gen !== generation) return;
    if (ev.event === "progress") {
      try {
        state.progress = JSON.parse(ev.data);
        if (state.batch) renderProgress();
      } catch {
        // A malformed progress event changes nothing; the next refresh reads the batch.
      }
    }
    if (ev.event === "batch") finishFollowing(live, gen);
    else scheduleRefresh(live, gen);
  };
  source.follow(id, onEvent, abort.signal).then(() => {
    // The stream ended without a batch event (204, 401): read the batch once more anyway.
    if (following === live && gen === generation) finishFollowing(live, gen);
  });
}

/** At most one refresh every LIVE_GAP_MS, never two at once; events in between fold into the next. */
function scheduleRefresh(live, gen) {
  if (live.timer || live.abort.signal.aborted) return;
  if (live.busy) {
    live.dirty = true;
    return;
  }
  const wait = Math.max(0, live.last + LIVE_GAP_MS - performance.now());
  live.timer = setTimeout(() => {
    live.timer = null;
    live.last = performance.now();
    live.busy = refresh(gen).catch(() => {}).finally(() => {
      live.busy = null;
      // Read finished while the stream was down (between two reconnects): nothing more will come.
      if (gen === generation && state.batch?.finished_at) {
        finishFollowing(live, gen);
        return;
      }
      if (live.dirty) {
        live.dirty = false;
        scheduleRefresh(live, gen);
      }
    });
  }, wait);
}

async function finishFollowing(live, gen) {
  if (following !== live) return;
  following = null;
  live.abort.abort();
  clearTimeout(live.timer);
  await live.busy;
  if (gen !== generation) return;
  state.live = false;
  state.progress = null;
  await refresh(gen).catch(() => {});
  $("live").hidden = true;
}

function stopFollowing() {
  if (!following) return;
  following.abort.abort();
  clearTimeout(following.timer);
  following = null;
  state.live = false;
}

// ---------------------------------------------------------------------------------------------
// The token form

function showTokenForm() {
  $("token-form").hidden = false;
  $("token-input").focus();
}

function wireTokenForm() {
  $("token-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const value = $("token-input").value.trim();
    if (!value) return;
    try {
      sessionStorage.setItem(TOKEN_KEY, value);
    } catch {
      // Storage refused (a private window's quota): the token then lasts until the form shows again.
    }
    $("token-form").hidden = true;
    startServer();
  });
}

// ---------------------------------------------------------------------------------------------
// Layout glue: the sidebar on phones, redrawing on resize

const phone = () => window.matchMedia("(max-width: 760px)").matches;

function collapseSidebarOnPhone() {
  if (phone() && state.id) setSidebarOpen(false);
}

function setSidebarOpen(open) {
  $("sidebar").classList.toggle("collapsed", !open);
  $("side-toggle").setAttribute("aria-expanded", String(open));
}

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

// ---------------------------------------------------------------------------------------------
// Start-up

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
  FONT = getComputedStyle(document.body).fontFamily || FONT;
  const embedded = document.getElementById("fanout-report");
  wireBrush();
  wireWaterfall();
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
    source = reportSource(data);
    startReport(data);
    return;
  }
  source = serverSource();
  wireTokenForm();
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible") loadList();
  });
  startServer();
}

main();
