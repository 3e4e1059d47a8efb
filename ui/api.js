// The server's API as the page's data source: reads with the token, its form, the event stream.

import { $ } from "./dom.js";
import { num } from "./format.js";
import { sseParser } from "./sse.js";

/** Batches in the sidebar: the newest page of the list. */
export const LIST_LIMIT = 50;
const TOKEN_KEY = "fanout-token";

/** A failed answer of the API: its HTTP status and its problem's `code`. */
export class ApiError extends Error {
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

/** The API as the page's data source; report.js answers the same calls from a report's data. */
export function serverSource() {
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

// The token form: shown when an answer is a 401, kept for the tab in sessionStorage.

function showTokenForm() {
  $("token-form").hidden = false;
  $("token-input").focus();
}

/** Wires the token form; `onToken` runs once a token is stored, to read everything again. */
export function wireTokenForm(onToken) {
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
    onToken();
  });
}
