// The tables: the thresholds' verdict, the checks' counts, and the batch by job, by stage and by shard.

import { $, el } from "./dom.js";
import { errorRate, fmtClock, fmtInt, fmtMs, fmtPct, fmtRate, fmtSpan } from "./format.js";
import { state } from "./state.js";

/** Rows kept in a table; a batch of a thousand jobs must not make a page of a thousand rows. */
const TABLE_ROWS = 200;

export function renderVerdict() {
  const v = state.batch.verdict;
  $("verdict").hidden = !v;
  if (!v) return;
  const failed = v.checks.filter((c) => !c.passed).length;
  $("verdict").className = `verdict ${v.passed ? "passed" : "failed"}`;
  $("verdict-head").textContent = v.passed
    ? `Thresholds met: ${v.checks.length} of ${v.checks.length} passed`
    : `Thresholds failed: ${failed} of ${v.checks.length} failed`;
  fillTable($("verdict-checks"), [
    { key: "name", label: "check", value: (c) => c.name, text: true },
    { key: "limit", label: "limit", value: (c) => c.limit, fmt: (v, c) => `${isLowerBound(c.name) ? "≥" : "≤"} ${figure(v)}` },
    { key: "actual", label: "actual", value: (c) => c.actual, fmt: (v, c) => figure(v, c) },
    { key: "passed", label: "result", value: (c) => (c.passed ? "passed" : "failed"), text: true, cls: (c) => (c.passed ? "good" : "bad") },
    { key: "detail", label: "detail", value: (c) => c.detail ?? "", text: true, cls: () => "wrap" },
  ], v.checks.map((c) => [c.name, c]));
}

/**
 * A lower bound: the figure must reach the limit (`min_...`, a job's `min_...`,
 * `baseline.throughput_per_s`, `completed`, and the checks' pass rates); the others must not
 * pass it. The page's copy of the text report's rule (src/cli/run/report.rs).
 */
function isLowerBound(name) {
  const last = name.split(".").pop();
  return last.startsWith("min_") || name === "completed" || name === "baseline.throughput_per_s"
    || name === "check_rate" || name.startsWith("checks.");
}

/**
 * A verdict's figure to three decimals; a failed check's actual in full when rounding would
 * show it equal to its limit (a pass rate of 0.9996 against 1 must not read "1").
 */
function figure(v, check) {
  if (v == null) return "—";
  const shown = String(+v.toFixed(3));
  return check && !check.passed && shown === String(+check.limit.toFixed(3)) ? String(v) : shown;
}

export function renderTables() {
  const s = state.batch.summary;
  const checks = checkRows(s.checks);
  $("checks-panel").hidden = !checks.length;
  if (checks.length) fillTable($("checks"), CHECK_COLUMNS, checks);
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

/** The checks' counts as rows [name, {passed, failed}]: failing checks first, then by name. */
function checkRows(map) {
  const failing = ([, c]) => (c.failed > 0 ? 0 : 1);
  return Object.entries(map ?? {}).sort((a, b) => failing(a) - failing(b) || (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
}

/** Passed over judged; null when the check was never judged. */
function passRate(c) {
  const judged = c.passed + c.failed;
  return judged ? c.passed / judged : null;
}

const pct = (key) => (r) => r.duration_ms?.[key];
const codes = (map) => Object.entries(map ?? {}).map(([k, n]) => `${k}: ${n}`).join(", ");

const CHECK_COLUMNS = [
  { key: "check", label: "check", value: (_c, name) => name, text: true, cls: (c) => (c.failed ? "name bad" : "name") },
  { key: "passed", label: "passed", value: (c) => c.passed, fmt: fmtInt },
  { key: "failed", label: "failed", value: (c) => c.failed, fmt: fmtInt, cls: (c) => (c.failed ? "bad" : null) },
  { key: "pass_rate", label: "pass rate", value: passRate, fmt: fmtPct, cls: (c) => (c.failed ? "bad" : null) },
];

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

/** Fills a table: rows are [key, record]; each cell says its column and its raw value. A
 * column's `fmt` is given the record too. */
function fillTable(table, columns, rows) {
  const head = el("thead", {}, el("tr", {}, ...columns.map((c) => el("th", { class: c.text ? "text" : null, text: c.label }))));
  const body = el("tbody");
  for (const [key, r] of rows.slice(0, TABLE_ROWS)) {
    const cells = columns.map((c) => {
      const v = c.value(r, key);
      const shown = c.text ? String(v) : c.fmt(v, r);
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
