// The batches page at /ui and the HTML report, as a person uses them: the list, a batch's cards and
// tables, the brush and the task pane, a live run, and a report opened from the disk.
// Runs in Debian's Chromium (FANOUT_CHROMIUM, default /usr/bin/chromium) against the debug build
// (FANOUT_BIN); the jobs reach a local server only, and the page must fetch from no other host.
// FANOUT_UPDATE_SCREENSHOTS=1 rewrites tests/browser/fixtures/picture.png and docs/ui.png.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import fs from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { chromium } from "playwright-core";
import { BIN, CHROMIUM, serve } from "./harness.mjs";

const UPDATE = process.env.FANOUT_UPDATE_SCREENSHOTS === "1";
const FIXTURE = new URL("./fixtures/picture.json", import.meta.url).pathname;
const PICTURE = new URL("./fixtures/picture.png", import.meta.url).pathname;
const DOCS_PICTURE = new URL("../../docs/ui.png", import.meta.url).pathname;
const VIEWPORT = { width: 1280, height: 800 };
/** A pixel differs when a channel moves more than this (out of 255): anti-aliasing stays under it. */
const PIXEL_THRESHOLD = 24;
/** The share of pixels that may differ before the picture counts as changed. */
const PIXEL_SHARE = 0.01;

/** The jobs' target: "ok" after a short wait, a 500 on /fail. */
function startTarget() {
  const target = http.createServer((req, res) => {
    setTimeout(() => {
      if (req.url.startsWith("/fail")) {
        res.writeHead(500, { "content-type": "text/plain" });
        res.end("no");
      } else {
        res.writeHead(200, { "content-type": "text/plain" });
        res.end("ok");
      }
    }, 2);
  });
  return new Promise((resolve) => target.listen(0, "127.0.0.1", () => resolve(target)));
}

/** Runs a program to its end; resolves with its exit code and output. */
function run(args) {
  const child = spawn(BIN, args, { stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  child.stdout.on("data", (c) => (out += c));
  child.stderr.on("data", (c) => (out += c));
  return new Promise((resolve) => child.on("exit", (code) => resolve({ code, out })));
}

let server;
let base;
let target;
let targetUrl;
let browser;
/** A finished load batch of two HTTP jobs (weights 3 and 1, one failing): most tests read it. */
let twoJobs;
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "fanout-ui-"));

async function postBatch(body, headers = {}) {
  const res = await fetch(`${base}/batches`, { method: "POST", headers: { "content-type": "application/json", ...headers }, body: JSON.stringify(body) });
  assert.ok(res.status === 201 || res.status === 202, `POST /batches answered ${res.status}: ${await res.clone().text()}`);
  return res.json();
}

async function getJson(p) {
  const res = await fetch(`${base}${p}`);
  assert.equal(res.status, 200, `GET ${p} answered ${res.status}`);
  return res.json();
}

/** A page that records every request leaving for another origin, every console error, and
 * every read of a batch without `?results=none`. */
async function openPage(origin = base) {
  const page = await browser.newPage({ viewport: VIEWPORT, deviceScaleFactor: 1 });
  const seen = { elsewhere: [], problems: [], requests: [], heavy: [] };
  page.on("request", (r) => {
    const url = r.url();
    seen.requests.push(url);
    if (!url.startsWith(origin)) seen.elsewhere.push(url);
    if (/\/batches\/[^/?#]+(\?|$)/.test(url) && !url.includes("results=none")) seen.heavy.push(url);
  });
  page.on("console", (m) => {
    if (m.type() === "error") seen.problems.push(m.text());
  });
  page.on("pageerror", (e) => seen.problems.push(String(e)));
  return { page, seen };
}

/** Waits until the page shows batch `id` with its cards filled and its waterfall drawn. */
function drawn(page, id, timeout = 15000) {
  return page.waitForFunction((id) => {
    const f = window.__fanout;
    const card = document.querySelector('[data-testid="card-tasks"]');
    return f && f.state.batch?.id === id && f.redraws > 0 && card && card.dataset.value !== "";
  }, id, { timeout });
}

const cardValue = (page, testid) => page.locator(`[data-testid="${testid}"]`).getAttribute("data-value").then(Number);
const cardText = (page, testid) => page.locator(`[data-testid="${testid}"]`).innerText();

/** How many distinct colors a canvas holds: 1 means nothing was drawn. */
function canvasColors(page, testid) {
  return page.evaluate((testid) => {
    const c = document.querySelector(`[data-testid="${testid}"]`);
    const data = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
    const colors = new Set();
    for (let i = 0; i < data.length && colors.size < 16; i += 4 * 7) colors.add((data[i] << 24) | (data[i + 1] << 16) | (data[i + 2] << 8) | data[i + 3]);
    return colors.size;
  }, testid);
}

async function assertCanvasesDrawn(page) {
  for (const testid of ["overview", "waterfall", "latency-histogram", "percentile-curve"]) {
    assert.ok(await canvasColors(page, testid) > 1, `the ${testid} canvas has pixels`);
  }
}

async function waitFinished(id, timeout = 30000) {
  const until = Date.now() + timeout;
  for (;;) {
    const b = await getJson(`/batches/${id}?results=none`);
    if (b.finished_at) return b;
    assert.ok(Date.now() < until, `batch ${id} finished in time`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** The card figures a summary should show, by test id. */
function expectedCards(s) {
  return {
    "card-p50": s.duration_ms?.p50,
    "card-p95": s.duration_ms?.p95,
    "card-p99": s.duration_ms?.p99,
    "card-max": s.duration_ms?.max,
    "card-tasks": s.tasks,
    "card-succeeded": s.succeeded,
    "card-failed": s.failed,
    "card-throughput": s.throughput_per_s,
    "card-error-rate": s.tasks ? (s.failed + s.timed_out) / s.tasks : 0,
  };
}

async function assertCardsMatch(page, summary) {
  for (const [testid, want] of Object.entries(expectedCards(summary))) {
    const got = await cardValue(page, testid);
    assert.ok(Math.abs(got - want) < 1e-9, `${testid} is ${got}, the summary says ${want}`);
  }
}

before(async () => {
  target = await startTarget();
  targetUrl = `http://127.0.0.1:${target.address().port}`;
  ({ server, base } = await serve(["--allow-net", "127.0.0.1"]));
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"] });
  twoJobs = await postBatch({
    label: "two jobs",
    jobs: [
      { kind: "http", id: "home", url: `${targetUrl}/`, weight: 3 },
      { kind: "http", id: "broken", url: `${targetUrl}/fail`, weight: 1 },
    ],
    load: { repeat: 200 },
    concurrency: 8,
    results: "all",
  });
  await waitFinished(twoJobs.id);
});

after(async () => {
  await browser?.close();
  if (server) {
    server.kill();
    await once(server, "exit");
  }
  target?.close();
  fs.rmSync(tmp, { recursive: true, force: true });
});

test("the page asks only its own server, logs no error, and opens a batch picked from the list", { timeout: 60000 }, async () => {
  const newer = await postBatch({ label: "newest", jobs: [{ kind: "sleep", duration_ms: 1 }] });
  const { page, seen } = await openPage();
  try {
    await page.goto(`${base}/ui`);
    const row = page.locator(`[data-testid="batch-list"] [data-testid="batch-row"][data-id="${twoJobs.id}"]`);
    await row.waitFor({ timeout: 10000 });
    assert.ok(await page.locator(`[data-testid="batch-row"][data-id="${newer.id}"]`).count() === 1, "the newest batch is listed too");
    await row.click();
    await drawn(page, twoJobs.id);
    assert.equal((await page.locator('[data-testid="status"]').innerText()).trim(), "completed");
    assert.ok(page.url().includes(`#/batches/${twoJobs.id}`), "the hash names the open batch");
    assert.deepEqual(seen.elsewhere, [], "no request left for another host");
    assert.deepEqual(seen.heavy, [], "no batch was read with its task list");
    assert.deepEqual(seen.problems, [], "no console error");
  } finally {
    await page.close();
  }
});

test("the cards and the per-job table show the figures of the batch's JSON", { timeout: 60000 }, async () => {
  const batch = await getJson(`/batches/${twoJobs.id}?results=none`);
  const s = batch.summary;
  assert.ok(s.failed > 0 && s.by_job, "the batch has failures and a per-job summary");
  const { page, seen } = await openPage();
  try {
    await page.goto(`${base}/ui#/batches/${twoJobs.id}`);
    await drawn(page, twoJobs.id);
    await assertCardsMatch(page, s);
    assert.equal(await cardText(page, "card-p95"), s.duration_ms.p95.toFixed(2));
    assert.equal(await cardText(page, "card-tasks"), String(s.tasks));
    assert.equal(await cardText(page, "card-throughput"), s.throughput_per_s.toFixed(1));
    assert.equal(await cardText(page, "card-error-rate"), `${((100 * (s.failed + s.timed_out)) / s.tasks).toFixed(2)}%`);

    const table = page.locator('[data-testid="by-job"]');
    assert.equal(await table.locator("tbody tr[data-key]").count(), Object.keys(s.by_job).length);
    for (const [key, job] of Object.entries(s.by_job)) {
      const cell = (col) => table.locator(`tr[data-key="${key}"] td[data-col="${col}"]`).getAttribute("data-value").then(Number);
      assert.equal(await cell("tasks"), job.tasks, `${key} tasks`);
      assert.equal(await cell("succeeded"), job.succeeded, `${key} succeeded`);
      assert.equal(await cell("failed"), job.failed, `${key} failed`);
      assert.equal(await cell("p95"), job.duration_ms.p95, `${key} p95`);
      assert.equal(await cell("throughput"), job.throughput_per_s, `${key} throughput`);
    }
    assert.equal(s.by_job.home.tasks, 3 * s.by_job.broken.tasks, "weights 3 and 1");
    assert.equal(await page.locator('[data-testid="by-stage"]').isVisible(), false, "no stages, no stage table");
    assert.deepEqual(seen.problems, [], "no console error");
  } finally {
    await page.close();
  }
});

test("a 100,000-task batch draws within a second in a page of fewer than 3,000 elements", { timeout: 90000 }, async () => {
  const big = await postBatch({ jobs: [{ kind: "sleep", duration_ms: 0 }], load: { repeat: 100000 }, concurrency: 64, results: "all" });
  await waitFinished(big.id, 60000);
  const { page, seen } = await openPage();
  try {
    await page.goto(`${base}/ui#/batches/${big.id}`);
    await drawn(page, big.id);
    // From navigation start to the first draw of the cards and the waterfall.
    const ms = await page.evaluate(() => window.__fanout.state.firstDrawMs);
    assert.ok(ms < 1000, `drawn ${Math.round(ms)} ms after navigation`);
    assert.equal(await cardValue(page, "card-tasks"), 100000);
    const nodes = await page.evaluate(() => document.querySelectorAll("*").length);
    assert.ok(nodes < 3000, `${nodes} elements`);
    assert.ok(await page.locator('[data-testid="waterfall"]').isVisible());
    assert.deepEqual(seen.heavy, [], "no batch was read with its task list");
    assert.deepEqual(seen.problems, [], "no console error");
  } finally {
    await page.close();
  }
  for (const p of [`/batches/${big.id}/timeline`, `/batches/${big.id}/latency?metric=duration`, `/batches/${big.id}/latency?metric=ttfb`]) {
    const text = await (await fetch(`${base}${p}`)).text();
    assert.ok(text.length < 200 * 1024, `${p} is ${text.length} bytes`);
  }
});

test("the brush zooms the waterfall to task rows, and a task's pane shows its phases", { timeout: 60000 }, async () => {
  const whole = await getJson(`/batches/${twoJobs.id}/timeline`);
  assert.ok(whole.span_ms > 0);
  // A window around one task in the middle of the run: narrow enough for rows, whatever the row limit.
  const probe = await getJson(`/batches/${twoJobs.id}/timeline?from_ms=${whole.span_ms / 2}&to_ms=${whole.span_ms / 2 + whole.span_ms / 50}`);
  assert.notEqual(probe.tasks, null, "a narrow window has task rows");
  const task = probe.tasks.find((t) => t.phases && t.end_ms != null) ?? probe.tasks[0];
  const a = Math.max(0, Math.floor(task.start_ms));
  const b = Math.ceil(task.end_ms ?? task.start_ms + 1);
  const { page, seen } = await openPage();
  try {
    await page.goto(`${base}/ui#/batches/${twoJobs.id}`);
    await drawn(page, twoJobs.id);
    await page.evaluate(([a, b]) => window.__fanout.zoom(a, b), [a, b]);
    const view = await page.evaluate(() => ({ window: window.__fanout.state.window, rows: window.__fanout.state.view.tasks?.length ?? null }));
    assert.deepEqual(view.window, { from: a, to: b });
    assert.ok(view.rows > 0, "the zoomed waterfall has rows");
    assert.ok(page.url().includes(`from=${a}`) && page.url().includes(`to=${b}`), "the window is in the hash");
    const answer = await getJson(`/batches/${twoJobs.id}/timeline?from_ms=${a}&to_ms=${b}`);
    assert.notEqual(answer.tasks, null, "the timeline answer for the window has rows");
    assert.ok(answer.tasks.some((t) => t.index === task.index));

    assert.equal(await page.evaluate((i) => window.__fanout.selectTask(i), task.index), true);
    const pane = page.locator('[data-testid="task-detail"]');
    assert.equal(await pane.locator('[data-field="index"]').innerText(), String(task.index));
    assert.ok(task.phases, "an HTTP task has phases");
    for (const phase of ["dns_ms", "connect_ms", "tls_ms", "send_ms", "wait_ms", "receive_ms"]) {
      const li = pane.locator(`[data-phase="${phase}"]`);
      assert.equal(Number(await li.getAttribute("data-value")), task.phases[phase], phase);
      assert.ok((await li.innerText()).includes(task.phases[phase].toFixed(2)), `${phase} is shown`);
    }
    if (UPDATE) {
      await page.screenshot({ path: DOCS_PICTURE });
      console.log(`# wrote ${DOCS_PICTURE}`);
    }

    // A click on the first row opens that row's task.
    await page.evaluate(() => { document.getElementById("wf-scroll").scrollTop = 0; });
    const wf = await page.locator('[data-testid="waterfall"]').boundingBox();
    await page.mouse.click(wf.x + wf.width / 2, wf.y + 27);
    const first = await page.evaluate(() => window.__fanout.state.rows[0].index);
    assert.equal(await pane.locator('[data-field="index"]').innerText(), String(first));

    // The brush works with the mouse too; a double click brings the whole run back.
    const ov = await page.locator('[data-testid="overview"]').boundingBox();
    await page.mouse.move(ov.x + ov.width * 0.3, ov.y + ov.height / 2);
    await page.mouse.down();
    await page.mouse.move(ov.x + ov.width * 0.45, ov.y + ov.height / 2, { steps: 5 });
    await page.mouse.up();
    await page.waitForFunction(() => window.__fanout.state.window && window.__fanout.state.window.from > 0);
    const dragged = await page.evaluate(() => window.__fanout.state.window);
    assert.ok(dragged.from < dragged.to && dragged.to < whole.span_ms + 1);
    await page.mouse.dblclick(ov.x + ov.width / 2, ov.y + ov.height / 2);
    await page.waitForFunction(() => window.__fanout.state.window === null);
    assert.deepEqual(seen.problems, [], "no console error");
  } finally {
    await page.close();
  }
});

test("a running batch's page follows it to the end, and a reload mid-run loses nothing", { timeout: 60000 }, async () => {
  const body = { jobs: [{ kind: "sleep", duration_ms: 100 }], load: { repeat: 120 }, concurrency: 4, results: "all" };
  const live = await postBatch(body, { Prefer: "respond-async" });
  const { page, seen } = await openPage();
  try {
    const opened = Date.now();
    await page.goto(`${base}/ui#/batches/${live.id}`);
    await drawn(page, live.id);
    assert.equal(await page.evaluate(() => window.__fanout.state.live), true, "the page follows the running batch");
    await page.waitForFunction(() => {
      const v = (id) => document.querySelector(`[data-testid="${id}"]`)?.dataset.value;
      return v("card-tasks") === "120" && v("card-succeeded") === "120";
    }, null, { timeout: 20000 });
    await page.waitForFunction(() => document.querySelector('[data-testid="status"]').textContent === "completed");
    const seconds = (Date.now() - opened) / 1000;
    const reads = seen.requests.filter((u) => u.includes(`/batches/${live.id}?results=none`)).length;
    assert.ok(reads <= 4 * seconds + 4, `${reads} reads of the batch in ${seconds.toFixed(1)} s: at most four a second`);
    await assertCardsMatch(page, (await getJson(`/batches/${live.id}?results=none`)).summary);

    const again = await postBatch(body, { Prefer: "respond-async" });
    await page.goto(`${base}/ui#/batches/${again.id}`);
    await drawn(page, again.id);
    await page.waitForFunction(() => Number(document.querySelector('[data-testid="card-succeeded"]').dataset.value) > 0, null, { timeout: 10000 });
    await page.reload();
    await drawn(page, again.id);
    await page.waitForFunction(() => document.querySelector('[data-testid="card-succeeded"]')?.dataset.value === "120", null, { timeout: 20000 });
    assert.deepEqual(seen.heavy, [], "no batch was read with its task list");
    assert.deepEqual(seen.problems, [], "no console error");
  } finally {
    await page.close();
  }
});

test("every canvas has drawn pixels", { timeout: 30000 }, async () => {
  const { page, seen } = await openPage();
  try {
    await page.goto(`${base}/ui#/batches/${twoJobs.id}`);
    await drawn(page, twoJobs.id);
    await assertCanvasesDrawn(page);
    assert.deepEqual(seen.problems, [], "no console error");
  } finally {
    await page.close();
  }
});

test("the event-stream parser reads the same events however the stream is cut", { timeout: 30000 }, async () => {
  const { page } = await openPage();
  try {
    await page.goto(`${base}/ui#/batches/${twoJobs.id}`);
    await drawn(page, twoJobs.id);
    const failures = await page.evaluate(() => {
      const stream = ': keep-alive\n\nevent: progress\ndata: {"ended":1,"tasks":3}\n\nevent: task\nid: 7\r\ndata: {"index":0,\r\ndata: "status":"succeeded"}\r\n\r\nevent: batch\nid: 8\ndata: {"id":"b"}\n\n';
      const want = JSON.stringify([
        { event: "progress", data: '{"ended":1,"tasks":3}', id: null },
        { event: "task", data: '{"index":0,\n"status":"succeeded"}', id: "7" },
        { event: "batch", data: '{"id":"b"}', id: "8" },
      ]);
      const failures = [];
      for (let cut = 0; cut <= stream.length; cut++) {
        const events = [];
        const push = window.__fanout.sseParser((e) => events.push(e));
        push(stream.slice(0, cut));
        push(stream.slice(cut));
        if (JSON.stringify(events) !== want) failures.push(cut);
      }
      return failures;
    });
    assert.deepEqual(failures, [], "cut at these offsets, the stream read differently");
  } finally {
    await page.close();
  }
});

/** Compares two PNGs pixel by pixel inside the browser; resolves with the share of pixels that differ. */
async function pixelDifference(a, b) {
  const page = await browser.newPage();
  try {
    return await page.evaluate(async ([a, b, threshold]) => {
      const load = (src) => new Promise((resolve, reject) => {
        const img = new Image();
        img.onload = () => resolve(img);
        img.onerror = reject;
        img.src = src;
      });
      const pixels = (img) => {
        const c = document.createElement("canvas");
        c.width = img.naturalWidth;
        c.height = img.naturalHeight;
        const ctx = c.getContext("2d");
        ctx.drawImage(img, 0, 0);
        return ctx.getImageData(0, 0, c.width, c.height).data;
      };
      const [ia, ib] = await Promise.all([load(a), load(b)]);
      if (ia.naturalWidth !== ib.naturalWidth || ia.naturalHeight !== ib.naturalHeight) return 1;
      const pa = pixels(ia);
      const pb = pixels(ib);
      let differ = 0;
      for (let i = 0; i < pa.length; i += 4) {
        const d = Math.max(Math.abs(pa[i] - pb[i]), Math.abs(pa[i + 1] - pb[i + 1]), Math.abs(pa[i + 2] - pb[i + 2]));
        if (d > threshold) differ++;
      }
      return differ / (pa.length / 4);
    }, [`data:image/png;base64,${a.toString("base64")}`, `data:image/png;base64,${b.toString("base64")}`, PIXEL_THRESHOLD]);
  } finally {
    await page.close();
  }
}

test("the report of the fixture looks as it did, and a real run's report makes no request", { timeout: 60000 }, async () => {
  const html = path.join(tmp, "picture.html");
  const made = await run(["report", FIXTURE, "--out", html]);
  assert.equal(made.code, 0, made.out);
  const fixture = JSON.parse(fs.readFileSync(FIXTURE, "utf8"));
  const url = `file://${html}`;
  const { page, seen } = await openPage(url);
  try {
    await page.goto(url);
    await drawn(page, fixture.batch.id);
    await assertCardsMatch(page, fixture.batch.summary);
    const shot = await page.screenshot({ fullPage: true });
    assert.deepEqual(seen.requests, [url], "the report asked for nothing");
    assert.deepEqual(seen.problems, [], "no console error");
    if (UPDATE || !fs.existsSync(PICTURE)) {
      fs.writeFileSync(PICTURE, shot);
      console.log(`# wrote ${PICTURE}: commit it`);
    } else {
      const share = await pixelDifference(fs.readFileSync(PICTURE), shot);
      const actual = path.join(tmp, "..", "fanout-picture-actual.png");
      if (share > PIXEL_SHARE) fs.writeFileSync(actual, shot);
      assert.ok(share <= PIXEL_SHARE, `${(share * 100).toFixed(2)} % of the pixels differ from ${PICTURE} (this run's picture: ${actual}; FANOUT_UPDATE_SCREENSHOTS=1 rewrites it)`);
    }
  } finally {
    await page.close();
  }

  const html2 = path.join(tmp, "run.html");
  const port = target.address().port;
  const ran = await run(["run", "--url", `${targetUrl}/`, "-n", "2000", "-c", "16", "--allow-net", `127.0.0.1:${port}`, "--format", "html", "--out", html2]);
  assert.equal(ran.code, 0, ran.out);
  const url2 = `file://${html2}`;
  const second = await openPage(url2);
  try {
    await second.page.goto(url2);
    const data = await second.page.evaluate(() => JSON.parse(document.getElementById("fanout-report").textContent));
    assert.equal(data.batch.summary.tasks, 2000);
    await drawn(second.page, data.batch.id);
    await assertCardsMatch(second.page, data.batch.summary);
    await assertCanvasesDrawn(second.page);
    // The brush works on the embedded bins alone.
    await second.page.evaluate((span) => window.__fanout.zoom(span / 4, span / 2), data.timeline.span_ms);
    assert.ok(await second.page.evaluate(() => window.__fanout.state.view.bins.length > 0));
    assert.deepEqual(second.seen.requests, [url2], "the report asked for nothing");
    assert.deepEqual(second.seen.problems, [], "no console error");
  } finally {
    await second.page.close();
  }
});

test("a report of a run that lost an instance says which, when, for how long and the rate it fell to", { timeout: 60000 }, async () => {
  const fixture = JSON.parse(fs.readFileSync(FIXTURE, "utf8"));
  fixture.batch.summary.lost = { shards: 2, tasks: 0, window_ms: 4915, instances: ["node3"], at: "2026-12-03T06:00:01.250Z", rate_per_s: 1000.5 };
  // A task the lost instance had started, run again.
  const again = fixture.timeline.tasks[0];
  again.attempts = 2;
  const json = path.join(tmp, "lost.json");
  fs.writeFileSync(json, JSON.stringify(fixture));
  const html = path.join(tmp, "lost.html");
  const made = await run(["report", json, "--out", html]);
  assert.equal(made.code, 0, made.out);
  const url = `file://${html}`;
  const { page, seen } = await openPage(url);
  try {
    await page.goto(url);
    await drawn(page, fixture.batch.id);
    const note = page.locator('[data-testid="lost"]');
    assert.ok(await note.isVisible(), "the loss is shown");
    assert.equal(await note.innerText(),
      "Instance node3 lost at Dec 3 06:00:01 UTC: 2 shards had no runner for 4.92 s; the batch started 1000.5 tasks/s meanwhile.");
    assert.equal(await page.evaluate((i) => window.__fanout.selectTask(i), again.index), true);
    const ran = page.locator('[data-testid="task-detail"] [data-field="attempts"]');
    assert.equal(await ran.innerText(), "2 times: retried, or run again after node3 was lost");
    assert.deepEqual(seen.problems, [], "no console error");
  } finally {
    await page.close();
  }
});
