#!/usr/bin/env node
// `npm run package [-- --target linux-x64]`: a platform-specific .vsix carrying the bundles, the media,
// the shipped model, and only that platform's onnxruntime binaries (the others would add ~250 MB).
// Writes twisted-smc-math-<target>-<version>.vsix and prints its size.
const cp = require("node:child_process");
const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");

const repo = path.resolve(__dirname, "..");
const targets = {
  "linux-x64": ["linux", "x64"],
  "linux-arm64": ["linux", "arm64"],
  "darwin-arm64": ["darwin", "arm64"],
  "win32-x64": ["win32", "x64"],
  "win32-arm64": ["win32", "arm64"],
};
const i = process.argv.indexOf("--target");
const target = i > 0 ? process.argv[i + 1] : `${process.platform}-${process.arch}`;
if (!targets[target]) {
  console.error(`package: --target must be one of ${Object.keys(targets).join(", ")} (got ${target})`);
  process.exit(2);
}
const [platform, arch] = targets[target];
// vsce lets a negated pattern win over any exclusion, so the one platform's binaries are named here.
const keep = `!node_modules/onnxruntime-node/bin/napi-v6/${platform}/${arch}/**`;
// The ignore file lives in a folder of its own, removed after: two packagings at once do not share it.
const scratch = fs.mkdtempSync(path.join(os.tmpdir(), "twisted-smc-package-"));
const ignore = path.join(scratch, ".vscodeignore");
fs.writeFileSync(ignore, fs.readFileSync(path.join(repo, ".vscodeignore"), "utf8") + `\n# ${target}'s onnxruntime binaries\n${keep}\n`);
const version = require(path.join(repo, "package.json")).version;
const out = path.join(repo, `twisted-smc-math-${target}-${version}.vsix`);
const vsce = path.join(repo, "node_modules/.bin/vsce");
let r;
try {
  r = cp.spawnSync(
    vsce,
    ["package", "--target", target, "--ignoreFile", ignore, "--allow-missing-repository", "--no-rewrite-relative-links", "--out", out],
    { cwd: repo, stdio: "inherit", env: { ...process.env, ONNXRUNTIME_NODE_INSTALL: "skip" } },
  );
} finally {
  fs.rmSync(scratch, { recursive: true, force: true });
}
if (r.status !== 0) process.exit(r.status ?? 1);
console.log(`package: ${path.basename(out)}, ${(fs.statSync(out).size / 1e6).toFixed(1)} MB`);
