// The page's state, where its data comes from, and the URL hash that names the open batch and window.

import { num } from "./format.js";

/** One object, exposed to tests as window.__fanout.state. */
export const state = {
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

/**
 * Where the page's data comes from: the server's API or a report's embedded data, behind one
 * interface (api.js, report.js), so the views never know which they have. Set once at start-up.
 */
export let source = null;
/** Bumped when another batch opens, so answers for the one before are dropped. */
export let generation = 0;
/** Draws of the waterfall, for the tests to wait on. */
export let redraws = 0;

/** Other modules read these bindings live; only these functions change them. */
export function useSource(s) {
  source = s;
}

export function nextGeneration() {
  return ++generation;
}

export function countRedraw() {
  redraws += 1;
}

// The URL hash: #/batches/ID?from=..&to=..

export function parseHash() {
  const m = location.hash.match(/^#\/batches\/([^?]+)(?:\?(.*))?$/);
  if (!m) return { id: null, window: null };
  const q = new URLSearchParams(m[2] ?? "");
  const from = parseFloat(q.get("from"));
  const to = parseFloat(q.get("to"));
  const win = Number.isFinite(from) && Number.isFinite(to) && to > from ? { from, to } : null;
  return { id: decodeURIComponent(m[1]), window: win };
}

export function hashFor(id, win) {
  const range = win ? `?from=${num(win.from)}&to=${num(win.to)}` : "";
  return `#/batches/${encodeURIComponent(id)}${range}`;
}

/** Replaces the hash without a new history entry (the brush moves often). */
export function writeHash() {
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

export function sameWindow(a, b) {
  return (a == null && b == null) || (a != null && b != null && a.from === b.from && a.to === b.to);
}

/** The whole run's span in ms: the overview's, or the batch's wall time before the overview is read. */
export function runSpan() {
  return state.overview?.span_ms ?? state.batch?.wall_ms ?? 0;
}
