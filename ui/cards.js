// The batch's header, its progress bar, its cards of figures, its HTTP status and error chips, and a lost instance.

import { $, el } from "./dom.js";
import { errorRate, fmtDateTime, fmtInt, fmtMs, fmtPct, fmtRate, fmtSpan } from "./format.js";
import { source, state } from "./state.js";

export function renderHeader() {
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

export function renderProgress() {
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

export function renderCards() {
  const s = state.batch.summary;
  for (const [testid, pick, format, warn] of CARDS) {
    const node = document.querySelector(`[data-testid="${testid}"]`);
    const value = pick(s);
    node.textContent = format(value);
    node.dataset.value = value == null ? "" : String(value);
    node.closest(".card").classList.toggle("bad", Boolean(warn && value > 0));
  }
}

export function renderMaps() {
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

/** A line naming the instance a sharded run lost, when, for how long, and what the rate fell to. */
export function renderLost() {
  const lost = state.batch.summary.lost;
  const node = $("lost");
  node.hidden = !lost;
  if (!lost) return;
  const who = lost.instances?.length ? `${lost.instances.length > 1 ? "Instances" : "Instance"} ${lost.instances.join(", ")}` : "An instance";
  const when = lost.at ? ` at ${fmtDateTime(lost.at)}` : "";
  const shards = `${fmtInt(lost.shards)} shard${lost.shards === 1 ? "" : "s"}`;
  const rate = lost.rate_per_s == null ? "" : `; the batch started ${fmtRate(lost.rate_per_s)} tasks/s meanwhile`;
  const taken = lost.tasks ? `; ${fmtInt(lost.tasks)} of its unfinished tasks were run again or ended as on_lost says` : "";
  node.textContent = `${who} lost${when}: ${shards} had no runner for ${fmtSpan(lost.window_ms)}${rate}${taken}.`;
  node.dataset.windowMs = String(lost.window_ms);
}

function chip(key, count, cls, title) {
  return el("span", { class: `chip ${cls}`, title, "data-key": key, "data-value": count },
    el("span", { class: "chip-key", text: key }), el("span", { class: "chip-count", text: fmtInt(count) }));
}
