// Following a running batch: its event stream drives the reads again, at most four a second.

import { refresh } from "./batch.js";
import { renderProgress } from "./cards.js";
import { $ } from "./dom.js";
import { generation, source, state } from "./state.js";

/** Least time between two live refreshes: at most four a second, whatever the event rate. */
const LIVE_GAP_MS = 250;
/** The running batch being followed: its stream's abort, and its refresh timer. */
let following = null;

/** Follows batch `id`'s events, reading it again at most four times a second, until it ends. */
export function startFollowing(id, gen) {
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

export function stopFollowing() {
  if (!following) return;
  following.abort.abort();
  clearTimeout(following.timer);
  following = null;
  state.live = false;
}
