// Checks on the page: a batch whose HTTP jobs judge their answers shows a checks table (failing
// checks first), its check rate in the verdict as a lower bound, and a task failed by a check
// lists its checks in the task pane. Runs like ui.test.mjs: Debian's Chromium against the debug
// build, the jobs reaching a local target only.
// FANOUT_SCREENSHOTS=DIR saves the page and the pane there, for a person to look at.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { once } from "node:events";
import fs from "node:fs";
import http from "node:http";
import path from "node:path";
import { chromium } from "playwright-core";
import { CHROMIUM, serve } from "./harness.mjs";

const SHOTS = process.env.FANOUT_SCREENSHOTS;
const CHECKS = [
  { name: "healthy", on: "json:$.status", equals: "ok" },
  { on: "status", equals: 200 },
];

/** The jobs' target: /good answers `{"status":"ok"}`, /degraded `{"status":"degraded"}`, both 200. */
function startTarget() {
  const target = http.createServer((req, res) => {
    const status = req.url.startsWith("/good") ? "ok" : "degraded";
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify({ status }));
  });
  return new Promise((resolve) => target.listen(0, "127.0.0.1", () => resolve(target)));
}

let server;
let base;
let target;
let browser;
/** The finished batch: ten tasks of each job, every task judged by both checks. */
let batch;

async function getJson(p) {
  const res = await fetch(`${base}${p}`);
  assert.equal(res.status, 200, `GET ${p} answered ${res.status}`);
  return res.json();
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

/** Opens batch `id` on the page and waits until its cards are filled and its waterfall drawn. */
async function openBatch(id) {
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 }, deviceScaleFactor: 1 });
  const problems = [];
  page.on("console", (m) => {
    if (m.type() === "error") problems.push(m.text());
  });
  page.on("pageerror", (e) => problems.push(String(e)));
  await page.goto(`${base}/ui#/batches/${id}`);
  await page.waitForFunction((id) => {
    const f = window.__fanout;
    const card = document.querySelector('[data-testid="card-tasks"]');
    return f && f.state.batch?.id === id && f.redraws > 0 && card && card.dataset.value !== "";
  }, id, { timeout: 15000 });
  return { page, problems };
}

before(async () => {
  if (SHOTS) fs.mkdirSync(SHOTS, { recursive: true });
  target = await startTarget();
  const url = `http://127.0.0.1:${target.address().port}`;
  ({ server, base } = await serve(["--allow-net", "127.0.0.1/32"]));
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"] });
  const res = await fetch(`${base}/batches`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      label: "checks",
      jobs: [
        { kind: "http", id: "good", url: `${url}/good`, checks: CHECKS },
        { kind: "http", id: "degraded", url: `${url}/degraded`, checks: CHECKS },
      ],
      load: { repeat: 10 },
      concurrency: 2,
      results: "all",
      thresholds: { min_check_rate: 0.9 },
    }),
  });
  assert.ok(res.status === 201 || res.status === 202, `POST /batches answered ${res.status}: ${await res.clone().text()}`);
  batch = await waitFinished((await res.json()).id);
});

after(async () => {
  await browser?.close();
  if (server) {
    server.kill();
    await once(server, "exit");
  }
  target?.close();
});

test("the batch's JSON counts each check's judgements and fails the tasks a check failed", () => {
  assert.deepEqual(batch.summary.checks, {
    healthy: { passed: 10, failed: 10 },
    "status equals 200": { passed: 20, failed: 0 },
  });
  assert.deepEqual(batch.summary.errors, { check: 10 });
  const rate = batch.verdict.checks.find((c) => c.name === "check_rate");
  assert.ok(rate, "the verdict has a check rate");
  assert.equal(rate.limit, 0.9);
  assert.equal(rate.passed, false, "30 of 40 judgements passed: under 0.9");
});

test("the checks table lists failing checks first with their counts, and the verdict bounds the check rate from below", { timeout: 60000 }, async () => {
  const { page, problems } = await openBatch(batch.id);
  try {
    const table = page.locator('[data-testid="checks"]');
    await table.waitFor({ state: "visible", timeout: 10000 });
    const rows = table.locator("tbody tr[data-key]");
    assert.equal(await rows.count(), 2);
    const cell = (i, col) => rows.nth(i).locator(`td[data-col="${col}"]`);
    const value = (i, col) => cell(i, col).getAttribute("data-value");

    assert.equal(await rows.nth(0).getAttribute("data-key"), "healthy", "the failing check comes first");
    assert.equal(await cell(0, "check").innerText(), "healthy");
    assert.equal(await value(0, "passed"), "10");
    assert.equal(await value(0, "failed"), "10");
    assert.equal(Number(await value(0, "pass_rate")), 0.5);
    assert.equal(await cell(0, "pass_rate").innerText(), "50.00%");
    assert.match(await cell(0, "check").getAttribute("class"), /\bbad\b/, "a failing check is marked");

    assert.equal(await rows.nth(1).getAttribute("data-key"), "status equals 200");
    assert.equal(await cell(1, "check").innerText(), "status equals 200");
    assert.equal(await value(1, "passed"), "20");
    assert.equal(await value(1, "failed"), "0");
    assert.equal(Number(await value(1, "pass_rate")), 1);
    assert.equal(await cell(1, "pass_rate").innerText(), "100.00%");

    const verdict = page.locator('[data-testid="verdict"]');
    assert.ok(await verdict.isVisible(), "the verdict is shown");
    const rate = verdict.locator('tr[data-key="check_rate"]');
    assert.equal(await rate.count(), 1, "the verdict has a check_rate row");
    assert.equal(await rate.locator('td[data-col="limit"]').innerText(), "≥ 0.9");
    assert.equal(await rate.locator('td[data-col="actual"]').innerText(), "0.75");
    assert.equal(await rate.locator('td[data-col="passed"]').innerText(), "failed");

    if (SHOTS) await page.screenshot({ path: path.join(SHOTS, "checks-page.png"), fullPage: true });
    assert.deepEqual(problems, [], "no console error");
  } finally {
    await page.close();
  }
});

test("a task failed by a check lists its checks in the task pane: ✗ healthy, it read \"degraded\"", { timeout: 60000 }, async () => {
  const timeline = await getJson(`/batches/${batch.id}/timeline`);
  assert.notEqual(timeline.tasks, null, "the whole run's timeline has task rows");
  const failed = timeline.tasks.find((t) => t.error?.code === "check");
  assert.ok(failed, "a row of a task failed by a check");
  assert.ok(failed.checks?.length, "its row carries its checks");

  const { page, problems } = await openBatch(batch.id);
  try {
    assert.equal(await page.evaluate((i) => window.__fanout.selectTask(i), failed.index), true, `task ${failed.index} is among the rows`);
    const pane = page.locator('[data-testid="task-detail"]');
    assert.equal(await pane.locator('[data-field="index"]').innerText(), String(failed.index));
    const list = pane.locator('ul.task-checks[data-field="checks"]');
    assert.ok(await list.isVisible(), "the pane lists the task's checks");
    assert.equal(await list.locator("li").count(), 2);

    const healthy = list.locator('li[data-check="healthy"]');
    assert.equal(await healthy.getAttribute("data-passed"), "false");
    assert.equal(await healthy.locator(".check-mark").innerText(), "✗");
    assert.equal(await healthy.locator(".check-actual").innerText(), '"degraded"');

    const status = list.locator('li[data-check="status equals 200"]');
    assert.equal(await status.getAttribute("data-passed"), "true");
    assert.equal(await status.locator(".check-mark").innerText(), "✓");
    assert.equal(await status.locator(".check-actual").innerText(), "200");

    const error = pane.locator('[data-field="error"]');
    assert.equal(await error.locator(".error-code").innerText(), "check");

    // The pane is a box of its own height: bring its end (the checks and the error) into view.
    await pane.evaluate((p) => { p.scrollTop = p.scrollHeight; });
    if (SHOTS) await page.screenshot({ path: path.join(SHOTS, "checks-pane.png"), fullPage: true });
    assert.deepEqual(problems, [], "no console error");
  } finally {
    await page.close();
  }
});
