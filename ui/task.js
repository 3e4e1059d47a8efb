// The task pane: one task's fields, its phases, its checks, a flow's steps and its error.

import { $, el, statusPill } from "./dom.js";
import { PHASES, fmtMs } from "./format.js";
import { state } from "./state.js";

export function renderTaskDetail(wanted) {
  const pane = $("task-detail");
  const t = state.task;
  if (!t) {
    // A window that could hold rows yet holds none has nothing to click: no hint then.
    if (wanted == null && state.view?.tasks != null && !state.rows.length) {
      pane.replaceChildren();
      return;
    }
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
  if (t.attempts > 1) fields.push(["attempts", "ran", ranAgain(t.attempts)]);
  const list = el("dl", { class: "fields" });
  for (const [key, label, value] of fields) list.append(el("dt", { text: label }), el("dd", { "data-field": key, text: value }));
  const parts = [
    el("div", { class: "task-head" }, el("h3", { text: `Task ${t.index}` }), statusPill(t.status)),
    list,
  ];
  if (t.phases) parts.push(phaseList(t.phases));
  // A task's check results are its output's `checks`; a timeline row may carry them flat.
  const checks = t.checks ?? t.output?.checks;
  if (checks?.length) parts.push(checkList(checks));
  if (t.steps?.length) parts.push(stepList(t.steps));
  if (t.error) {
    parts.push(el("div", { class: "task-error", "data-field": "error" },
      el("span", { class: "error-code", text: t.error.code }), el("span", { text: t.error.message })));
  }
  pane.replaceChildren(...parts);
}

/** How often a task ran, and why it may have run again: a lost instance names itself. */
function ranAgain(attempts) {
  const lost = state.batch?.summary?.lost;
  const who = lost?.instances?.length ? lost.instances.join(", ") : "an instance";
  return lost
    ? `${attempts} times: retried, or run again after ${who} was lost`
    : `${attempts} times (retried)`;
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

/** A flow's steps in order: how each ended, its name (its id, else its place) and its time. */
function stepList(steps) {
  const list = el("ul", { class: "task-checks", "data-field": "steps" });
  for (const s of steps) {
    const ok = s.status === "succeeded";
    const mark = ok ? "✓" : s.status === "skipped" ? "–" : "✗";
    const said = s.error ? `${s.status} (${s.error})` : s.status;
    list.append(el("li", { "data-step": String(s.index), "data-status": s.status },
      el("span", { class: `check-mark ${ok ? "good" : s.status === "skipped" ? "hint" : "bad"}`, title: s.status, text: mark }),
      el("span", { class: "check-name", text: s.id ?? `step ${s.index}` }),
      el("span", { class: "check-actual mono", text: s.duration_ms == null ? said : `${said} · ${fmtMs(s.duration_ms)} ms` })));
  }
  return list;
}

/** Each check's verdict on the task's answer: ✓ or ✗, its name, and what the answer held. */
function checkList(checks) {
  const list = el("ul", { class: "task-checks", "data-field": "checks" });
  for (const c of checks) {
    list.append(el("li", { "data-check": c.name, "data-passed": String(c.passed) },
      el("span", { class: `check-mark ${c.passed ? "good" : "bad"}`, title: c.passed ? "passed" : "failed", text: c.passed ? "✓" : "✗" }),
      el("span", { class: "check-name", text: c.name }),
      el("span", { class: "check-actual mono", text: c.actual || "nothing read" })));
  }
  return list;
}
