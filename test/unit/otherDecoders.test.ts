import assert from "node:assert/strict";
import { cpSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadModel } from "../../src/engine/lm/model/loadModel";
import { KvCache } from "../../src/engine/lm/decoder/kvCache";
import { DEFAULT_SOLVE_OPTIONS, solve } from "../../src/engine/solve";
import { assertSameGreedy, hiddenOf, logitsOf, maxAbsDiff, shippedModel } from "./helpers";

/**
 * Decoder folders of other shapes than the shipped model (built by scripts/fixtures/): grouped-query
 * attention, and a GPT-2-style export without last_hidden_state that the preparation step completes.
 */
for (const [name, kvHeads] of [
  ["llama-gqa-tiny", 2],
  ["gpt2-tiny", 4],
] as const) {
  describe(`a ${name} decoder folder`, () => {
    // A copy, so the prepared graph is written outside the repository.
    const dir = join(mkdtempSync(join(tmpdir(), "tsmc-dec-")), name);
    cpSync(join(__dirname, "../fixtures", name), dir, { recursive: true });
    const parity = JSON.parse(readFileSync(join(dir, "parity.json"), "utf8"));
    const diff = (a: ArrayLike<number>, b: number[]) => Math.max(...b.map((x, i) => Math.abs(x - a[i])));

    it("loads, reads its KV shape from config.json, and matches PyTorch through a cached step", async () => {
      const { folder, lm } = await loadModel(dir, { threads: 1 });
      assert.equal(folder.config.numKvHeads, kvHeads);
      const first = await lm.prefill(parity.prefill.input_ids[0]);
      assert.ok(first.readHidden, "a last_hidden_state output (added by preparation when missing)");
      assert.ok(diff(await hiddenOf(first), parity.prefill.last_hidden[0]) < 1e-3);
      assert.ok(diff(await logitsOf(first), parity.prefill.last_logits[0]) < 1e-3);
      const second = await lm.step(first.state.select([0, 0]), [parity.decode.input_ids[0][0], parity.decode.input_ids[0][0]]);
      first.state.dispose();
      const rows = await logitsOf(second);
      assert.ok(diff(rows.subarray(0, lm.vocabSize), parity.decode.logits[0]) < 1e-3);
      assert.ok(diff(rows.subarray(lm.vocabSize), parity.decode.logits[0]) < 1e-3);
      second.state.dispose();
      await lm.dispose();
    });

    it("runs twisted SMC at token and step level", async () => {
      const model = await loadModel(dir, { threads: 1 });
      for (const level of ["token", "step"] as const) {
        const r = await solve(model, "Ava has 12 pens. How many pens does Ava have?", {
          ...DEFAULT_SOLVE_OPTIONS,
          particles: 4,
          maxTokens: 12,
          level,
          resample: "always",
        });
        assert.equal(r.particles.length, 4);
        assert.ok(r.steps > 0);
      }
      await model.lm.dispose();
    });
  });
}

describe("a half-precision (fp16) copy of the shipped model", function () {
  this.timeout(120000);
  // Made by scripts/fixtures/to_fp16.py: fp16 weights, activations, KV cache and logits, with RMSNorm's
  // mean of squares and the rotary angles kept in fp32. Copied, so the prepared graph is written outside.
  const dir = join(mkdtempSync(join(tmpdir(), "tsmc-fp16-")), "tiny-math-llama-fp16");
  cpSync(join(__dirname, "../fixtures/tiny-math-llama-fp16"), dir, { recursive: true });

  it("keeps a float16 KV cache and agrees with the fp32 model through prefill, a resampling gather and steps", async () => {
    const half = await loadModel(dir, { threads: 1 });
    const full = await shippedModel();
    const prompt = full.tokenizer.encodeProblem("Ava has 12 pens. She buys 30 more pens. How many pens does Ava have now?");
    let [h, f] = [await half.lm.prefill(prompt), await full.lm.prefill(prompt)];
    assert.equal((h.state as KvCache).tensors[0].type, "float16");
    assert.ok(maxAbsDiff(await hiddenOf(h), await hiddenOf(f)) < 0.05);
    assert.ok(maxAbsDiff(await logitsOf(h), await logitsOf(f)) < 0.1);
    let [hs, fs] = [h.state.select([0, 0, 0]), f.state.select([0, 0, 0])];
    h.state.dispose();
    f.state.dispose();
    for (const tokens of [
      [20, 21, 22],
      [30, null, 32],
      [40, 41, 42],
    ]) {
      [h, f] = [await half.lm.step(hs, tokens), await full.lm.step(fs, tokens)];
      const d = maxAbsDiff(await logitsOf(h), await logitsOf(f));
      assert.ok(d < 0.1, `logits differ by ${d}`);
      [hs, fs] = [h.state.select([2, 0, 1]), f.state.select([2, 0, 1])];
      h.state.dispose();
      f.state.dispose();
    }
    hs.dispose();
    fs.dispose();
    await half.lm.dispose();
  });

  it("writes the same greedy solutions as the fp32 model", async () => {
    const half = await loadModel(dir, { threads: 1 });
    const full = await shippedModel();
    await assertSameGreedy(half, full, 8);
    await half.lm.dispose();
  });
});
