// Builds the bundles from src: the engine process + CLI (node), and, once they exist, the extension
// host (cjs, `vscode` external) and the webview script (browser, into media/).
// Usage: node esbuild.js [--watch] [--production]
const esbuild = require("esbuild");
const fs = require("node:fs");
const path = require("node:path");

const production = process.argv.includes("--production");
const watch = process.argv.includes("--watch");
const pkg = require("./package.json");

/** Prints errors in the `file:line:col: error: text` form VS Code's $esbuild-watch matcher reads. */
const problemMatcher = {
  name: "problem-matcher",
  setup(build) {
    build.onStart(() => console.log("[watch] build started"));
    build.onEnd((result) => {
      for (const { text, location } of result.errors) {
        console.error(`✘ [ERROR] ${text}`);
        if (location) console.error(`    ${location.file}:${location.line}:${location.column}:`);
      }
      console.log("[watch] build finished");
    });
  },
};

const common = {
  bundle: true,
  minify: production,
  sourcemap: !production,
  sourcesContent: false,
  logLevel: watch ? "silent" : "warning",
  define: { PACKAGE_VERSION: JSON.stringify(pkg.version) },
  plugins: watch ? [problemMatcher] : [],
};

const targets = [
  {
    // The engine runs as a child process and from the command line; onnxruntime-node's native
    // binding cannot be bundled, so it stays a runtime dependency.
    entryPoints: {
      cli: "src/engine/cli/main.ts",
      engine: "src/engine/server/entry.ts",
      bench: "src/bench/bench.ts",
      "decode-bench": "src/bench/decodeBench.ts",
    },
    platform: "node",
    target: "node20",
    format: "cjs",
    outdir: "dist",
    external: ["onnxruntime-node"],
  },
  {
    entryPoints: { extension: "src/extension/extension.ts" },
    platform: "node",
    target: "node20",
    format: "cjs",
    outdir: "dist",
    external: ["vscode", "onnxruntime-node"],
  },
  {
    entryPoints: { panel: "src/webview/panel.ts" },
    platform: "browser",
    target: "es2022",
    format: "iife",
    outdir: "media",
  },
  {
    // Extension-host tests (test/e2e): run inside VS Code, so `vscode` and mocha come from there.
    entryPoints: {
      index: "test/e2e/suite/index.ts",
      "solve.e2e": "test/e2e/suite/solve.e2e.ts",
      "trust.e2e": "test/e2e/suite/trust.e2e.ts",
    },
    platform: "node",
    target: "node20",
    format: "cjs",
    outdir: "dist-test/e2e",
    external: ["vscode", "mocha"],
  },
];

async function main() {
  const present = targets.filter((t) => Object.values(t.entryPoints).every((p) => fs.existsSync(path.join(__dirname, p))));
  const contexts = await Promise.all(present.map((t) => esbuild.context({ ...common, ...t })));
  if (watch) {
    await Promise.all(contexts.map((c) => c.watch()));
    return;
  }
  try {
    for (const c of contexts) await c.rebuild();
  } finally {
    await Promise.all(contexts.map((c) => c.dispose()));
  }
  const built = present.flatMap((t) => Object.keys(t.entryPoints));
  console.log(`built ${built.join(", ")}${production ? " (production)" : ""}`);
  fs.chmodSync(path.join(__dirname, "dist/cli.js"), 0o755);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
