// Shared by the two real-VS-Code runs: a fresh code-server on loopback (its own profile, extensions,
// home and workspace) and Debian's Chromium driven by playwright-core.
const cp = require("node:child_process");
const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");
const { chromium } = require("playwright-core");

const repo = path.resolve(__dirname, "../..");
const root = path.resolve(process.env.E2E_ROOT || path.join(repo, ".test-artifacts/e2e"));
const codeServer = path.join(root, "cs/node_modules/.bin/code-server");

function fail(message) {
  console.error(`e2e: ${message}`);
  process.exit(1);
}

/** A fresh run folder with an empty profile, extensions dir, home and workspace. */
function freshRun({ trusted = true } = {}) {
  if (!fs.existsSync(codeServer)) fail(`code-server is not installed in ${root}/cs: run scripts/e2e-setup.sh first`);
  fs.mkdirSync(path.join(root, "runs"), { recursive: true });
  const run = fs.mkdtempSync(path.join(root, "runs", "run-"));
  const dirs = Object.fromEntries(["data", "extensions", "home", "tmp", "workspace"].map((d) => [d, path.join(run, d)]));
  for (const d of Object.values(dirs)) fs.mkdirSync(d, { recursive: true });
  fs.mkdirSync(path.join(dirs.data, "User"), { recursive: true });
  fs.writeFileSync(
    path.join(dirs.data, "User/settings.json"),
    JSON.stringify({
      "workbench.startupEditor": "none",
      "security.workspace.trust.enabled": !trusted,
      "security.workspace.trust.startupPrompt": "never",
    }),
  );
  const env = {
    ...process.env,
    HOME: dirs.home,
    TMPDIR: dirs.tmp,
    XDG_CONFIG_HOME: path.join(dirs.home, ".config"),
    XDG_DATA_HOME: path.join(dirs.home, ".local/share"),
    VSCODE_IPC_HOOK_CLI: "",
    // The llama-server root (scripts/llama-server/setup.sh) lives under the real home, not the run's.
    LLAMA_SERVER_ROOT: process.env.LLAMA_SERVER_ROOT || path.join(os.homedir(), ".cache/twisted-smc/llama-server-sid"),
  };
  const common = [
    "--auth",
    "none",
    "--disable-telemetry",
    "--disable-update-check",
    ...(trusted ? ["--disable-workspace-trust"] : []),
    "--disable-getting-started-override",
    "--extensions-dir",
    dirs.extensions,
    "--user-data-dir",
    dirs.data,
    "--config",
    path.join(run, "config.yaml"),
  ];
  return { run, dirs, env, common };
}

/** Starts code-server; resolves with its URL and a stop function. */
async function startServer({ dirs, env, common }) {
  const server = cp.spawn(codeServer, [...common, "--bind-addr", "127.0.0.1:0", "--ignore-last-opened", dirs.workspace], { env });
  let log = "";
  server.stdout.on("data", (d) => (log += d));
  server.stderr.on("data", (d) => (log += d));
  const url = await new Promise((resolve, reject) => {
    const timer = setInterval(() => {
      const m = log.match(/HTTP server listening on (http:\/\/[\d.:]+)/);
      if (m) {
        clearInterval(timer);
        resolve(m[1].replace("127.0.0.1", "localhost"));
      }
    }, 100);
    setTimeout(() => reject(new Error(`code-server did not start:\n${log}`)), 60000);
  });
  return { url, log: () => log, stop: () => server.kill() };
}

function launchBrowser() {
  return chromium.launch({
    executablePath: "/usr/bin/chromium",
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--disable-dev-shm-usage",
    ],
  });
}

module.exports = { repo, root, codeServer, fail, freshRun, startServer, launchBrowser };
