// Swagger UI at /docs, as a person uses it against a server with --api-token: Authorize with
// the token, then "Try it out" on POST /batches sends the example batch, which answers 201.
// Runs in Debian's Chromium (FANOUT_CHROMIUM, default /usr/bin/chromium) and the debug build
// (FANOUT_BIN); nothing is fetched from another host.
import { test } from "node:test";
import assert from "node:assert/strict";
import { once } from "node:events";
import { chromium } from "playwright-core";
import { CHROMIUM, serve } from "./harness.mjs";

const TOKEN = "browser-test-token";

test("Authorize, then Try it out on POST /batches answers 201", async () => {
  const { server, base } = await serve(["--api-token", TOKEN]);
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"] });
  try {
    const page = await browser.newPage();
    const elsewhere = [];
    const problems = [];
    page.on("request", (r) => { if (!r.url().startsWith(base)) elsewhere.push(r.url()); });
    page.on("console", (m) => { if (m.type() === "error") problems.push(m.text()); });

    await page.goto(`${base}/docs/`);
    await page.getByRole("button", { name: /Authorize/ }).first().click();
    await page.locator(".auth-container input").first().fill(TOKEN);
    await page.locator(".auth-btn-wrapper button.authorize").click();
    await page.locator(".auth-btn-wrapper button.btn-done").click();

    const post = page.locator("#operations-batches-create_batch");
    await post.locator(".opblock-summary").click();
    await post.getByRole("button", { name: "Try it out" }).click();
    await post.getByRole("button", { name: "Execute" }).click();
    const status = post.locator(".live-responses-table .response .response-col_status").first();
    await status.waitFor({ timeout: 15000 });
    assert.equal((await status.innerText()).trim(), "201");
    await page.screenshot({ path: process.env.FANOUT_SCREENSHOT ?? "/tmp/fanout-swagger.png", fullPage: false });

    // Without the token the same request is refused: the 201 came from Authorize.
    const bare = await fetch(`${base}/batches`, { method: "POST", body: '{"jobs":[{"kind":"sleep","duration_ms":1}]}' });
    assert.equal(bare.status, 401);
    assert.deepEqual(elsewhere, [], "no request left for another host");
    assert.deepEqual(problems, [], "no console error");
  } finally {
    await browser.close();
    server.kill();
    await once(server, "exit");
  }
});
