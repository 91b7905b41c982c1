#!/usr/bin/env node
// Runs the extension-host tests (dist-test/e2e) inside a real VS Code: code-server on loopback, driven
// by Debian's Chromium through playwright-core. VS Code's test payload (extensionDevelopmentPath +
// extensionTestsPath) loads this repository as the extension under development and runs the suite in
// the extension host; its exit code comes back through codeAutomationExit.
//
// Needs scripts/e2e-setup.sh to have run (it installs code-server, Chromium and their needs).
// Env: E2E_ROOT (default .test-artifacts/e2e), E2E_TIMEOUT_MS (default 300000), E2E_VERBOSE=1.
const cp = require("node:child_process");
const fs = require("node:fs");
const path = require("node:path");
const util = require("node:util");
const { chromium } = require("playwright-core");

const repo = path.resolve(__dirname, "../..");
const root = path.resolve(process.env.E2E_ROOT || path.join(repo, ".test-artifacts/e2e"));
const codeServer = path.join(root, "cs/node_modules/.bin/code-server");
const timeoutMs = Number(process.env.E2E_TIMEOUT_MS || 300000);
const verbose = process.env.E2E_VERBOSE === "1";

function fail(message) {
  console.error(`e2e: ${message}`);
  process.exit(1);
}

if (!fs.existsSync(codeServer)) fail(`code-server is not installed in ${root}/cs: run scripts/e2e-setup.sh first`);
if (!fs.existsSync(path.join(repo, "dist-test/e2e/index.js"))) fail("the test bundle is missing: run `npm run build` first");

// A fresh profile, workspace and home for every run: nothing leaks between runs or into ~/.config.
fs.mkdirSync(path.join(root, "runs"), { recursive: true });
const run = fs.mkdtempSync(path.join(root, "runs", "run-"));
const dirs = Object.fromEntries(["data", "extensions", "home", "tmp", "workspace"].map((d) => [d, path.join(run, d)]));
for (const d of Object.values(dirs)) fs.mkdirSync(d, { recursive: true });
fs.mkdirSync(path.join(dirs.data, "User"), { recursive: true });
fs.writeFileSync(path.join(dirs.data, "User/settings.json"), JSON.stringify({ "workbench.startupEditor": "none", "security.workspace.trust.enabled": false }));

const env = { ...process.env, HOME: dirs.home, TMPDIR: dirs.tmp, XDG_CONFIG_HOME: path.join(dirs.home, ".config"), XDG_DATA_HOME: path.join(dirs.home, ".local/share"), VSCODE_IPC_HOOK_CLI: "" };
const args = [
  "--auth", "none", "--disable-telemetry", "--disable-update-check", "--disable-workspace-trust", "--disable-getting-started-override",
  "--extensions-dir", dirs.extensions, "--user-data-dir", dirs.data, "--config", path.join(run, "config.yaml"),
  "--bind-addr", "127.0.0.1:0", "--ignore-last-opened", dirs.workspace,
];
const server = cp.spawn(codeServer, args, { env });
let serverLog = "";
server.stdout.on("data", (d) => (serverLog += d));
server.stderr.on("data", (d) => (serverLog += d));

async function main() {
  const url = await new Promise((resolve, reject) => {
    const timer = setInterval(() => {
      const m = serverLog.match(/HTTP server listening on (http:\/\/[\d.:]+)/);
      if (m) {
        clearInterval(timer);
        resolve(m[1].replace("127.0.0.1", "localhost"));
      }
    }, 100);
    setTimeout(() => reject(new Error(`code-server did not start:\n${serverLog}`)), 60000);
  });
  const browser = await chromium.launch({
    executablePath: "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"],
  });
  try {
    const context = await browser.newContext();
    let finish;
    const exited = new Promise((r) => (finish = r));
    // The workbench's console comes through here too; the extension host's test output is what matters.
    await context.exposeFunction("codeAutomationLog", (_type, args) => {
      const line = util.format(...args);
      if (verbose || !/^(Resolving|Resolved|Creating a socket|Updating additional|\[Service Worker\]|ChatSessionStore|getaddrinfo|\s+at )/.test(line)) console.log(line);
    });
    await context.exposeFunction("codeAutomationExit", (code) => finish(code));
    const page = await context.newPage();
    page.on("pageerror", (e) => console.error(`[page error] ${String(e).slice(0, 300)}`));
    const host = new URL(url).host;
    const remote = (p) => `vscode-remote://${host}${p}`;
    const payload = [
      ["extensionDevelopmentPath", remote(repo)],
      ["extensionTestsPath", remote(path.join(repo, "dist-test/e2e/index.js"))],
      ["skipWelcome", "true"],
    ];
    await page.goto(`${url}/?folder=${encodeURIComponent(dirs.workspace)}&payload=${encodeURIComponent(JSON.stringify(payload))}`);
    const code = await Promise.race([exited, new Promise((r) => setTimeout(() => r("timeout"), timeoutMs))]);
    await page.screenshot({ path: path.join(root, "extension-host-tests.png") }).catch(() => undefined);
    if (code === "timeout") throw new Error(`the extension-host tests did not finish in ${timeoutMs} ms`);
    return code;
  } finally {
    await browser.close();
  }
}

main()
  .then((code) => {
    server.kill();
    console.log(`e2e: extension-host tests exited with code ${code}`);
    process.exit(code === 0 ? 0 : 1);
  })
  .catch((e) => {
    server.kill();
    console.error(`e2e: ${e.message}\n--- code-server log (tail) ---\n${serverLog.slice(-3000)}`);
    process.exit(1);
  });
