// The sidebar: the list of batches, its rows, and folding it away on a phone.

import { LIST_LIMIT } from "./api.js";
import { $, el, statusPill } from "./dom.js";
import { errorRate, fmtClock, fmtDateTime, fmtInt, fmtMs, fmtPct, shortId } from "./format.js";
import { hashFor, source, state } from "./state.js";

export async function loadList() {
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

export function markActiveRow() {
  for (const row of $("batch-list").children) row.classList.toggle("active", row.dataset.id === state.id);
}

/** Keeps the open batch's sidebar row as fresh as its detail, between two reads of the list. */
export function updateListRow(batch) {
  const i = state.list.findIndex((b) => b.id === batch.id);
  if (i < 0) return;
  state.list[i] = batch;
  const row = [...$("batch-list").children].find((li) => li.dataset.id === batch.id);
  row?.replaceWith(batchRow(batch));
}

// On a phone the sidebar folds away once a batch is open.

const phone = () => window.matchMedia("(max-width: 760px)").matches;

export function collapseSidebarOnPhone() {
  if (phone() && state.id) setSidebarOpen(false);
}

export function setSidebarOpen(open) {
  $("sidebar").classList.toggle("collapsed", !open);
  $("side-toggle").setAttribute("aria-expanded", String(open));
}
