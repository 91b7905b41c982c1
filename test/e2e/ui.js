#!/usr/bin/env node
// The user's path, in a real VS Code: install the packaged .vsix into a clean code-server, open a
// Markdown file, run "Solve with Twisted SMC" from the command palette, and read the particles and the
// answer in the panel and the document. Saves a screenshot as a test artifact (E2E_ROOT/ui-panel.png).
// Needs scripts/e2e-setup.sh and `npm run package` first.
const cp = require("node:child_process");
const fs = require("node:fs");
const path = require("node:path");
const { repo, root, codeServer, fail, freshRun, startServer, launchBrowser } = require("./codeServer");

const PROBLEM = "Ava has 12 pens. She buys 30 more pens. How many pens does Ava have now?";

/** Processes whose command line matches `pattern`, by /proc (Linux). */
function pidsMatching(pattern) {
  return fs
    .readdirSync("/proc")
    .filter((d) => /^\d+$/.test(d))
    .filter((pid) => {
      try {
        return pattern.test(fs.readFileSync(`/proc/${pid}/cmdline`, "utf8").replace(/\0/g, " "));
      } catch {
        return false;
      }
    });
}

/** CPU seconds a process has used (user + system). */
function cpuSeconds(pid) {
  try {
    const fields = fs.readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ");
    return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime in clock ticks (USER_HZ = 100)
  } catch {
    return 0;
  }
}

/**
 * Watches the extension host and the engine while the editor sits idle after a solve: both must stay
 * near 0% CPU (a status request loop once kept them at 43% and 18%).
 */
async function idleCpu(seconds) {
  const watched = { "extension host": pidsMatching(/--type=extensionHost/), engine: pidsMatching(/dist\/engine\.js/) };
  const before = Object.fromEntries(Object.entries(watched).map(([k, pids]) => [k, pids.reduce((a, p) => a + cpuSeconds(p), 0)]));
  await new Promise((r) => setTimeout(r, seconds * 1000));
  return Object.fromEntries(
    Object.entries(watched).map(([k, pids]) => [
      k,
      { processes: pids.length, cpuPercent: Math.round((1000 * (pids.reduce((a, p) => a + cpuSeconds(p), 0) - before[k])) / seconds) / 10 },
    ]),
  );
}

async function main() {
  const version = require(path.join(repo, "package.json")).version;
  const vsix = path.join(repo, `twisted-smc-math-linux-x64-${version}.vsix`);
  if (!fs.existsSync(vsix)) fail(`${path.basename(vsix)} is missing: run \`npm run package\` first`);
  const run = freshRun();
  const installed = cp.spawnSync(codeServer, [...run.common, "--install-extension", vsix], { env: run.env, encoding: "utf8" });
  if (installed.status !== 0) fail(`installing the .vsix failed:\n${installed.stdout}${installed.stderr}`);
  fs.writeFileSync(path.join(run.dirs.workspace, "problems.md"), `${PROBLEM}\n\nA second paragraph that is not a problem.\n`);
  const server = await startServer(run);
  const browser = await launchBrowser();
  const shot = path.join(root, "ui-panel.png");
  const page = await (await browser.newContext({ viewport: { width: 1400, height: 900 } })).newPage();
  try {
    await page.goto(`${server.url}/?folder=${encodeURIComponent(run.dirs.workspace)}`);
    await page.waitForSelector(".monaco-workbench", { timeout: 60000 });
    // Open the file with Quick Open; the cursor starts at its first line, inside the problem.
    await page.keyboard.press("Control+P");
    await page.waitForSelector(".quick-input-widget input", { timeout: 20000 });
    await page.keyboard.type("problems.md");
    await page.locator(".quick-input-list .monaco-list-row").first().click({ timeout: 20000 });
    await page.waitForSelector(".monaco-editor .view-lines", { timeout: 20000 });
    await page.waitForTimeout(1500);
    await page.keyboard.press("F1");
    await page.waitForSelector(".quick-input-widget input", { timeout: 20000 });
    await page.keyboard.type("Solve with Twisted SMC");
    await page.locator(".quick-input-list .monaco-list-row", { hasText: "Solve with Twisted SMC" }).first().click({ timeout: 20000 });
    // The panel streams the run; its answer line appears when the run ends.
    const frame = page.frameLocator("iframe.webview.ready").last().frameLocator("#active-frame");
    const answer = frame.locator(".answer");
    await answer.waitFor({ timeout: 120000 });
    const nodes = await frame.locator("circle.node").count();
    const answerText = (await answer.textContent()) ?? "";
    const editorText = await page
      .waitForFunction(
        () => {
          const t = document.querySelector(".monaco-editor .view-lines")?.textContent ?? "";
          return t.includes("Answer:") ? t : false;
        },
        null,
        { timeout: 30000 },
      )
      .then((h) => h.jsonValue());
    await page.screenshot({ path: shot });
    // Then it sits idle: let the solve's aftermath settle, and watch for 10 s.
    await page.waitForTimeout(2000);
    const idle = await idleCpu(10);
    const quiet =
      idle["extension host"].processes > 0 &&
      idle.engine.processes > 0 &&
      idle["extension host"].cpuPercent < 5 &&
      idle.engine.cpuPercent < 5;
    // Monaco renders spaces as non-breaking ones.
    const ok = nodes > 0 && /Answer:\s+\d+/.test(answerText) && /Answer:\s+\d+/.test(editorText.replace(/\*/g, "")) && quiet;
    console.log(JSON.stringify({ ok, particlesDrawn: nodes, panel: answerText.trim(), idle, screenshot: shot }, null, 2));
    return ok;
  } catch (e) {
    await page.screenshot({ path: shot }).catch(() => undefined);
    throw new Error(`${e.message}\n(screenshot: ${shot})`);
  } finally {
    await browser.close();
    server.stop();
  }
}

main().then(
  (ok) => process.exit(ok ? 0 : 1),
  (e) => fail(e.message),
);
