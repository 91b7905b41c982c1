import assert from "node:assert/strict";
import { copyFileSync, cpSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, truncateSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadModel } from "../../src/engine/lm/model/loadModel";
import { prepareForSmc } from "../../src/engine/lm/onnx/prepareGraph";
import { MODEL_DIR } from "./helpers";
import { mountTinyDisk, TinyDisk } from "./tinyDisk";

/** The files a model folder needs to load (the shipped folder's weights twice over would not fit). */
const NEEDED = ["config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json", "onnx/model.onnx"];

describe("a model folder on a full disk", function () {
  this.timeout(120000);
  let disk: TinyDisk | string;
  before(function () {
    const bytes = NEEDED.reduce((a, f) => a + statSync(join(MODEL_DIR, f)).size, 0);
    // Room for the folder but not for the prepared copy of its graph (about the graph's size).
    disk = mountTinyDisk(bytes + 512 * 1024);
    if (typeof disk === "string") this.skip();
  });
  after(() => (typeof disk === "string" ? undefined : disk?.unmount()));

  it("loads from memory with a one-line warning about the disk, not a complaint about the model", async function () {
    if (typeof disk === "string") return this.skip();
    const dir = join(disk.dir, "model");
    for (const f of NEEDED) {
      mkdirSync(join(dir, f, ".."), { recursive: true });
      copyFileSync(join(MODEL_DIR, f), join(dir, f));
    }
    const warnings: string[] = [];
    const warn = console.warn;
    console.warn = (...args: unknown[]) => warnings.push(args.join(" "));
    // The prepared copy goes to the cache folder: here, on the full disk too.
    const cacheDir = process.env.TWISTED_SMC_CACHE_DIR;
    process.env.TWISTED_SMC_CACHE_DIR = join(disk.dir, "cache");
    try {
      // Drawing in the graph makes the engine prepare (and cache) an edited copy of it.
      const model = await loadModel(dir, { threads: 1, device: "cpu", sampleInGraph: true });
      const out = await model.lm.prefill([1, 20, 30]);
      assert.equal((await out.readLogits()).length, model.lm.vocabSize, "the model runs");
      out.release();
      out.state.dispose();
      await model.lm.dispose();
    } finally {
      console.warn = warn;
      if (cacheDir === undefined) delete process.env.TWISTED_SMC_CACHE_DIR;
      else process.env.TWISTED_SMC_CACHE_DIR = cacheDir;
    }
    assert.ok(warnings.length >= 1, "a warning says the prepared graph is not cached");
    for (const w of warnings) {
      assert.equal(w.split("\n").length, 1, w);
      assert.match(w, /the disk holding .* is full; free some space/);
      assert.match(w, /not caching the prepared graph/);
      assert.doesNotMatch(w, /corrupt|truncated|not a valid/i);
    }
    // Nothing half-written is left to break the next load, and nothing in the model folder.
    assert.deepEqual(readdirSync(join(dir, "onnx")), ["model.onnx"]);
    assert.deepEqual(
      readdirSync(join(disk.dir, "cache"), { recursive: true }).filter((f) => /\.smc\.(onnx|json)/.test(String(f))),
      [],
    );
  });
});

describe("a prepared graph cut short", () => {
  it("is prepared again, not loaded (a full disk once left such files behind)", () => {
    const dir = join(mkdtempSync(join(tmpdir(), "tsmc-cut-")), "m");
    try {
      cpSync(MODEL_DIR, dir, { recursive: true, filter: (src) => !src.includes(".smc.") });
      const onnx = join(dir, "onnx/model.onnx");
      const options = { hiddenSize: 128, vocabSize: 332, sampler: true };
      const first = prepareForSmc(onnx, options);
      const whole = statSync(first.path).size;
      assert.equal(prepareForSmc(onnx, options).cached, true);
      truncateSync(first.path, Math.floor(whole / 2));
      const again = prepareForSmc(onnx, options);
      assert.equal(again.cached, false);
      assert.equal(statSync(again.path).size, whole);
    } finally {
      rmSync(join(dir, ".."), { recursive: true, force: true });
    }
  });
});
