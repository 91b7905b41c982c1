#!/usr/bin/env node
// Runs the extension-host tests (dist-test/e2e) inside a real VS Code: VS Code's test payload
// (extensionDevelopmentPath + extensionTestsPath) loads this repository as the extension under
// development and runs the mocha suite in the extension host; its exit code comes back through
// codeAutomationExit. Needs scripts/e2e-setup.sh first.
// `--untrusted` runs the suite for an untrusted workspace (Workspace Trust on, folder not trusted).
// Env: E2E_ROOT (default .test-artifacts/e2e), E2E_TIMEOUT_MS (default 300000), E2E_VERBOSE=1.
const fs = require("node:fs");
const path = require("node:path");
const util = require("node:util");
const { repo, root, fail, freshRun, startServer, launchBrowser } = require("./codeServer");

const timeoutMs = Number(process.env.E2E_TIMEOUT_MS || 300000);
const verbose = process.env.E2E_VERBOSE === "1";
// The workbench's own console comes through codeAutomationLog too; the tests' output is what matters.
const noise = /^(Resolving|Resolved|Creating a socket|Updating additional|\[Service Worker\]|ChatSessionStore|getaddrinfo|\s+at )/;

async function main() {
  if (!fs.existsSync(path.join(repo, "dist-test/e2e/index.js"))) fail("the test bundle is missing: run `npm run build` first");
  const untrusted = process.argv.includes("--untrusted");
  const run = freshRun({ trusted: !untrusted });
  run.env.TWISTED_SMC_E2E_SUITE = untrusted ? "trust" : "solve";
  const server = await startServer(run);
  const browser = await launchBrowser();
  try {
    const context = await browser.newContext();
    let finish;
    const exited = new Promise((r) => (finish = r));
    await context.exposeFunction("codeAutomationLog", (_type, args) => {
      const line = util.format(...args);
      if (verbose || !noise.test(line)) console.log(line);
    });
    await context.exposeFunction("codeAutomationExit", (code) => finish(code));
    const page = await context.newPage();
    page.on("pageerror", (e) => console.error(`[page error] ${String(e).slice(0, 300)}`));
    const remote = (p) => `vscode-remote://${new URL(server.url).host}${p}`;
    const payload = [
      ["extensionDevelopmentPath", remote(repo)],
      ["extensionTestsPath", remote(path.join(repo, "dist-test/e2e/index.js"))],
      ["skipWelcome", "true"],
    ];
    await page.goto(
      `${server.url}/?folder=${encodeURIComponent(run.dirs.workspace)}&payload=${encodeURIComponent(JSON.stringify(payload))}`,
    );
    const code = await Promise.race([exited, new Promise((r) => setTimeout(() => r("timeout"), timeoutMs))]);
    await page.screenshot({ path: path.join(root, "extension-host-tests.png") }).catch(() => undefined);
    if (code === "timeout") throw new Error(`the extension-host tests did not finish in ${timeoutMs} ms\n${server.log().slice(-3000)}`);
    return code;
  } finally {
    await browser.close();
    server.stop();
  }
}

main().then(
  (code) => {
    console.log(`e2e: extension-host tests exited with code ${code}`);
    process.exit(code === 0 ? 0 : 1);
  },
  (e) => fail(e.message),
);
