// A report's embedded data as the page's data source: the API's answers, computed without a request.

import { ApiError } from "./api.js";

/** A report's data: `{batch, timeline, latency: {duration, ttfb}}`. Nothing here touches the network. */
export function reportSource(data) {
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
    // The highest bin's mean, not the mean of the means: a spike of in-flight tasks must
    // survive the zoom-out.
    merged.in_flight = Math.max(merged.in_flight, b.in_flight);
  }
  return merged;
}
