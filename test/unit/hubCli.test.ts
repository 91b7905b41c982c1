import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { FakeHub, shippedModelFiles, variantRepoFiles } from "./hubFixture";

/** The bundled CLI, as users run it (build first). Run asynchronously: the fake Hub lives in this process. */
const CLI = join(__dirname, "../../dist/cli.js");
const PROBLEM = "Ava has 12 pens. She buys 30 more pens. How many pens does Ava have now?";
const TOKEN = "hf_secretsecretsecret";

interface Ran {
  status: number;
  stdout: string;
  stderr: string;
}

/** Every file under `dir`, recursively (links not followed). */
function allFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? allFiles(join(dir, e.name)) : [join(dir, e.name)]));
}

describe("twisted-smc models: the command line over a local Hub", function () {
  this.timeout(120000);
  const hub = new FakeHub();
  const cache = mkdtempSync(join(tmpdir(), "tsmc-hubcli-"));
  /** HF_HOME: where huggingface_hub's login keeps the token file (empty unless a test writes one). */
  const home = mkdtempSync(join(tmpdir(), "tsmc-hubhome-"));
  let endpoint: string;
  const run = (args: string[], env: Record<string, string> = {}) =>
    new Promise<Ran>((resolve) => {
      const childEnv: NodeJS.ProcessEnv = { ...process.env, HF_HUB_CACHE: cache, HF_ENDPOINT: endpoint, HF_HOME: home };
      delete childEnv.HF_TOKEN;
      delete childEnv.HF_TOKEN_PATH;
      Object.assign(childEnv, env);
      execFile(process.execPath, [CLI, ...args], { env: childEnv, timeout: 100000 }, (error, stdout, stderr) =>
        resolve({ status: error ? ((error as { code?: number }).code ?? 1) : 0, stdout, stderr }),
      );
    });

  before(async () => {
    hub.add({ id: "acme/tiny-math", commit: "c".repeat(40), files: shippedModelFiles() });
    hub.add({ id: "acme/gated", commit: "d".repeat(40), files: variantRepoFiles(), token: TOKEN });
    endpoint = await hub.start();
  });
  after(() => hub.close());

  it("pull reports each file (JSON lines with --progress json), then says it is cached", async () => {
    const r = await run(["models", "pull", "acme/tiny-math", "--progress", "json"]);
    assert.equal(r.status, 0, r.stderr);
    const events = r.stdout
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as { event: string; path?: string; bytes?: number });
    assert.deepEqual(events[0], {
      event: "start",
      repo: "acme/tiny-math",
      commit: "c".repeat(40),
      dtype: "fp32",
      files: 5,
      bytes: events[0].bytes ?? -1,
    });
    assert.deepEqual(
      events.filter((e) => e.event === "downloaded").map((e) => e.path),
      ["config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json", "onnx/model.onnx"],
    );
    assert.equal(events.at(-1)?.event, "done");
    const again = await run(["models", "pull", "acme/tiny-math"]);
    assert.equal(again.status, 0, again.stderr);
    assert.match(
      again.stdout,
      /^acme\/tiny-math \(fp32\): already in the cache; use --model acme\/tiny-math\n.*models--acme--tiny-math\/snapshots\/c{40}\n$/,
    );
    assert.match(again.stderr, /^ {2}onnx\/model\.onnx {2}3\.5 MiB {2}cached$/m);
  });

  it("solve --model org/name runs the pulled model from the cache", async () => {
    const r = await run(["solve", PROBLEM, "--model", "acme/tiny-math", "--threads", "1"]);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /Answer: {2}\d+/);
  });

  it("an id that is not downloaded gives the pull command, and nothing is fetched", async () => {
    const from = hub.requests.length;
    const r = await run(["solve", PROBLEM, "--model", "acme/other"]);
    assert.equal(r.status, 3);
    assert.equal(
      r.stderr,
      "twisted-smc: acme/other is not downloaded (and no folder of that name exists): run twisted-smc models pull acme/other\n",
    );
    assert.equal(hub.requests.length, from);
  });

  it("errors: one line, exit 3 for a missing or gated repo, exit 2 for a dtype it lacks; HF_TOKEN is never shown or stored", async () => {
    const missing = await run(["models", "pull", "acme/nothing"]);
    assert.equal(missing.status, 3);
    assert.match(
      missing.stderr,
      /^twisted-smc: acme\/nothing was not found on .* \(404: Repository not found\): check the id and the revision\n$/,
    );
    const gated = await run(["models", "pull", "acme/gated"]);
    assert.equal(gated.status, 3);
    assert.match(
      gated.stderr,
      /^twisted-smc: .* refused access to acme\/gated \(401: Access to model acme\/gated is restricted\. You must be authenticated to access it\.\): .*set HF_TOKEN .*\n$/,
    );
    const dtype = await run(["models", "pull", "acme/tiny-math", "--dtype", "q4"]);
    assert.equal(dtype.status, 2);
    assert.equal(dtype.stderr, "twisted-smc: acme/tiny-math has no q4 variant; it has fp32 (--dtype)\n");
    const ok = await run(["models", "pull", "acme/gated", "--dtype", "q4"], { HF_TOKEN: TOKEN });
    assert.equal(ok.status, 0, ok.stderr);
    assert.ok(hub.requests.some((q) => q.authorization === `Bearer ${TOKEN}`));
    for (const out of [ok.stdout, ok.stderr, gated.stderr]) assert.ok(!out.includes(TOKEN));
    // The token file huggingface_hub's login writes serves too.
    writeFileSync(join(home, "token"), TOKEN + "\n");
    const fromFile = await run(["models", "pull", "acme/gated", "--dtype", "fp16"]);
    rmSync(join(home, "token"));
    assert.equal(fromFile.status, 0, fromFile.stderr);
    for (const f of allFiles(cache)) assert.ok(!readFileSync(f).includes(TOKEN), f);
  });

  it("info lists the variants with what each pull downloads, fetching no file; a gated repo needs the token", async () => {
    const from = hub.requests.length;
    const r = await run(["models", "info", "acme/gated", "--json"], { HF_TOKEN: TOKEN });
    assert.equal(r.status, 0, r.stderr);
    const files = variantRepoFiles();
    const size = (...paths: string[]) => paths.reduce((n, p) => n + files.find((f) => f.path === p)!.content.length, 0);
    const side = [
      "config.json",
      "generation_config.json",
      "tokenizer.json",
      "tokenizer_config.json",
      "special_tokens_map.json",
      "chat_template.jinja",
    ];
    assert.deepEqual(JSON.parse(r.stdout), {
      repo: "acme/gated",
      commit: "d".repeat(40),
      auto: "fp32",
      variants: [
        { dtype: "fp32", graph: "onnx/model.onnx", files: 7, bytes: size(...side, "onnx/model.onnx") },
        {
          dtype: "fp16",
          graph: "onnx/model_fp16.onnx",
          files: 8,
          bytes: size(...side, "onnx/model_fp16.onnx", "onnx/model_fp16.onnx_data"),
        },
        {
          dtype: "q4",
          graph: "onnx/model_q4.onnx",
          files: 9,
          bytes: size(...side, "onnx/model_q4.onnx", "onnx/model_q4.onnx_data", "onnx/model_q4.onnx_data_1"),
        },
      ],
    });
    assert.deepEqual(hub.downloads(from), []);
    const text = await run(["models", "info", "acme/gated"], { HF_TOKEN: TOKEN });
    assert.match(text.stdout, /^acme\/gated at d{10}\n {2}fp32 .* onnx\/model\.onnx {2}\(auto\)\n {2}fp16 /);
    const gated = await run(["models", "info", "acme/gated", "--json"]);
    assert.equal(gated.status, 3);
    assert.match(gated.stderr, /^twisted-smc: .* refused access to acme\/gated \(401: .*set HF_TOKEN .*\n$/);
    assert.equal(gated.stdout, "");
  });

  it("list shows id, revision, variants, size and folder; rm frees it", async () => {
    const list = await run(["models", "list"]);
    assert.equal(list.status, 0, list.stderr);
    assert.match(list.stdout, /^acme\/gated {2}main \(d{10}\) {2}fp16,q4 {2}[\d.]+ KiB {2}.*models--acme--gated\/snapshots\/d{40}$/m);
    assert.match(list.stdout, /^acme\/tiny-math {2}main \(c{10}\) {2}fp32 {2}3\.5 MiB {2}.*models--acme--tiny-math\/snapshots\/c{40}$/m);
    const json = JSON.parse((await run(["models", "list", "--json"])).stdout) as { repo: string; bytes: number }[];
    assert.deepEqual(
      json.map((r) => r.repo),
      ["acme/gated", "acme/tiny-math"],
    );
    const rm = await run(["models", "rm", "acme/gated"]);
    assert.equal(rm.status, 0, rm.stderr);
    assert.match(rm.stdout, /^removed acme\/gated: freed [\d.]+ KiB \(.*models--acme--gated\)\n$/);
    assert.ok(!readdirSync(cache).includes("models--acme--gated"));
    assert.ok(statSync(join(cache, "models--acme--tiny-math")).isDirectory());
    const again = await run(["models", "rm", "acme/gated"]);
    assert.equal(again.status, 3);
    assert.match(again.stderr, /^twisted-smc: acme\/gated is not in the cache \(.*\)\n$/);
    const usage = await run(["models", "pull"]);
    assert.equal(usage.status, 2);
    assert.equal(usage.stderr, "twisted-smc: models pull needs a model id: org/name\n");
  });
});
