// The waterfall of a batch that kept no task row for it (`results: errors` and nothing failed):
// the page says why in words, and offers no task to click; a batch with rows still does.
// Runs like ui.test.mjs: Debian's Chromium against the debug build, sleep jobs only.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { once } from "node:events";
import { chromium } from "playwright-core";
import { CHROMIUM, serve } from "./harness.mjs";

const HINT = "Click a task in the waterfall to see its timing.";

let server;
let base;
let browser;

async function postBatch(body) {
  const res = await fetch(`${base}/batches`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
  assert.ok(res.status === 201 || res.status === 202, `POST /batches answered ${res.status}: ${await res.clone().text()}`);
  return res.json();
}

async function waitFinished(id, timeout = 30000) {
  const until = Date.now() + timeout;
  for (;;) {
    const res = await fetch(`${base}/batches/${id}?results=none`);
    const b = await res.json();
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
  ({ server, base } = await serve([]));
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"] });
});

after(async () => {
  await browser?.close();
  if (server) {
    server.kill();
    await once(server, "exit");
  }
});

test("a batch that kept rows for failures only, and had none, says why its waterfall has no rows", { timeout: 60000 }, async () => {
  const batch = await postBatch({ jobs: [{ kind: "sleep", duration_ms: 1 }], load: { repeat: 20 }, results: "errors" });
  await waitFinished(batch.id);
  const { page, problems } = await openBatch(batch.id);
  try {
    const note = page.locator("#wf-note");
    assert.ok(await note.isVisible(), "the waterfall has a note");
    assert.match(await note.innerText(), /^No task rows kept: this batch ran with results: errors and none failed\./);
    assert.deepEqual(await page.evaluate(() => window.__fanout.state.rows.length), 0);
    const pane = page.locator('[data-testid="task-detail"]');
    assert.equal((await pane.innerText()).trim(), "", "no hint to click a task that is not there");
    assert.deepEqual(problems, [], "no console error");
  } finally {
    await page.close();
  }
});

test("a batch that kept its rows still offers them to click", { timeout: 60000 }, async () => {
  const batch = await postBatch({ jobs: [{ kind: "sleep", duration_ms: 1 }], load: { repeat: 20 }, results: "all" });
  await waitFinished(batch.id);
  const { page, problems } = await openBatch(batch.id);
  try {
    assert.equal(await page.evaluate(() => window.__fanout.state.rows.length), 20);
    assert.equal((await page.locator('[data-testid="task-detail"]').innerText()).trim(), HINT);
    assert.equal(await page.locator("#wf-note").isVisible(), false, "nothing to explain");
    assert.deepEqual(problems, [], "no console error");
  } finally {
    await page.close();
  }
});
