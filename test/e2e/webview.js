#!/usr/bin/env node
// The particle panel's script in headless Chromium, under the same Content-Security-Policy the extension
// sets: it draws a streamed run (nodes for every particle and step, resampling marks, posterior, chosen
// solution) and shows hostile model output as text — no element, no script from it.
const fs = require("node:fs");
const path = require("node:path");
const assert = require("node:assert/strict");
const { launchBrowser, repo } = require("./codeServer");

const script = fs.readFileSync(path.join(repo, "media/panel.js"), "utf8");
const style = fs.readFileSync(path.join(repo, "media/panel.css"), "utf8");
const nonce = "testnonce0123456789";
const html = (
  saved,
) => `<!DOCTYPE html><html><head><meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; script-src 'nonce-${nonce}';"><style>${style}</style></head>
<body><div id="root"></div><script nonce="${nonce}">window.posted=[];window.saved=${JSON.stringify(saved ?? null).replace(/</g, "\\u003c")};window.acquireVsCodeApi=()=>({postMessage:(m)=>window.posted.push(m),getState:()=>window.saved??undefined,setState:(s)=>{window.saved=JSON.parse(JSON.stringify(s));}});</script>
<script nonce="${nonce}">${script}</script></body></html>`;

const EVIL = `<img src=x onerror="window.pwned=1"><script>window.pwned=2</script>**bold**`;
const K = 4;
const steps = [0, 1, 2].map((s) => ({
  step: s,
  kind: "token",
  ess: 4 - s,
  resampled: s === 1,
  particles: Array.from({ length: K }, (_, i) => ({
    parent: s === 2 ? 0 : i,
    text: s === 0 && i === 0 ? EVIL : `t${s}`,
    logWeight: s === 2 && i === 1 ? null : -i,
    finished: s === 2 && i === 3,
  })),
}));
const run = { id: "r1", problem: `Problem ${EVIL}`, started: Date.now(), steps: [] };
const confidence = { kind: "clear", summary: "42 (posterior 75.0%)", outOfDepth: `out of its depth ${EVIL}` };
const result = {
  answer: "42",
  probability: 0.75,
  confidence,
  posterior: [
    { answer: "42", probability: 0.75, particles: 3 },
    { answer: "<b>7</b>", probability: 0.25, particles: 1 },
  ],
  level: "token",
  twist: null,
  particles: Array.from({ length: K }, (_, i) => ({ answer: i < 3 ? "42" : "7", logWeight: -i })),
};

(async () => {
  const browser = await launchBrowser();
  try {
    const page = await browser.newPage({ viewport: { width: 240, height: 900 } });
    const errors = [];
    page.on("pageerror", (e) => errors.push(e.message));
    await page.setContent(html());
    assert.match(await page.locator("#root").textContent(), /Loading runs/, "no false 'no run yet' before the host's snapshot");
    assert.deepEqual(await page.evaluate(() => window.posted), [{ type: "ready" }], "the script says it is ready");
    await page.evaluate((run) => window.postMessage({ type: "run", run, focus: true }, "*"), run);
    for (const step of steps) await page.evaluate((step) => window.postMessage({ type: "step", runId: "r1", step }, "*"), step);
    await page.evaluate(({ run, steps, result }) => window.postMessage({ type: "run", run: { ...run, steps, result }, focus: true }, "*"), {
      run,
      steps,
      result,
    });
    await page.waitForTimeout(200);
    assert.equal(await page.locator("circle.node").count(), K * steps.length, "a node per particle per step");
    assert.equal(await page.locator("line.resampled").count(), 1, "the resampling step is marked");
    assert.equal(await page.locator("circle.node.finished").count(), 1, "finished particles are drawn hollow");
    const radius = (n) => page.locator("circle.node").nth(n).getAttribute("r").then(Number);
    assert.ok(
      (await radius(K * 2 + 1)) < (await radius(K * 2 + 2)),
      "a dead particle (null: −∞ on the wire) is drawn lightest, not heaviest",
    );
    assert.match(await page.locator(".answer").textContent(), /Answer: 42 \(posterior 75\.0%\) — 4 particles/);
    assert.ok((await page.locator(".warning").textContent()).includes("out of its depth <img src=x"), "out of its depth, said as text");
    const width = await page.locator("#root").evaluate((e) => e.clientWidth);
    for (const chart of ["svg.ess", "svg.trajectories"])
      assert.ok((await page.locator(chart).boundingBox()).width <= width, `${chart} fits a ${width}px sidebar`);
    assert.equal(await page.locator("#root img, #root script, #root b").count(), 0, "model output never becomes markup");
    assert.ok((await page.locator(".problem").textContent()).includes("<img src=x"), "it is shown as text");
    assert.ok((await page.locator("pre.solution").textContent()).startsWith("<img src=x"), "the chosen solution, as text");
    assert.equal(await page.evaluate(() => window.pwned), undefined, "no script from model output ran");
    await page
      .locator("circle.node")
      .nth(K * 2 + 1)
      .click();
    assert.match(await page.locator("h3").first().textContent(), /Particle 2/);
    assert.equal(await page.locator("circle.node.selected").count(), 1, "the clicked particle is highlighted");
    assert.equal(
      await page
        .locator("circle.node")
        .nth(K * 2 + 1)
        .getAttribute("class"),
      "node selected",
    );
    assert.ok(
      await page.locator("pre.solution").evaluate((e) => {
        const r = e.getBoundingClientRect();
        return r.top >= 0 && r.top < window.innerHeight;
      }),
      "its text is scrolled into view",
    );
    assert.deepEqual(errors, []);
    // Reopened: the webview's saved state draws the last run at once, before the host says anything.
    const saved = await page.evaluate(() => window.saved);
    const again = await browser.newPage();
    await again.setContent(html(saved));
    assert.match(await again.locator(".answer").textContent(), /Answer: 42/, "the last run, drawn at once");
    console.log("webview: 18 checks passed");
  } finally {
    await browser.close();
  }
})().catch((e) => {
  console.error(`webview: ${e.message}`);
  process.exit(1);
});
