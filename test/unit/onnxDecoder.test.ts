import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import * as ort from "onnxruntime-node";
import { StepOutput } from "../../src/engine/lm/causalLm";
import { kvReordersRun } from "../../src/engine/lm/decoder/kvReorder";
import { loadModel, LoadedModel } from "../../src/engine/lm/model/loadModel";
import { hiddenOf, logitsOf, maxAbsDiff, MODEL_DIR, shippedModel } from "./helpers";

let eager: Promise<LoadedModel> | undefined;
/** The shipped export as it is, without the SMC preparation. */
const eagerModel = () => (eager ??= loadModel(MODEL_DIR, { threads: 1, prepare: false }));

interface Parity {
  prefill: {
    input_ids: number[][];
    attention_mask: number[][];
    position_ids: number[][];
    last_logits: number[][];
    last_hidden: number[][];
  };
  decode: { input_ids: number[][]; attention_mask: number[][]; position_ids: number[][]; logits: number[][] };
}
const parity: Parity = JSON.parse(readFileSync(join(__dirname, "../fixtures/tiny-math-llama.parity.json"), "utf8"));

const row = async (out: StepOutput, r: number, width: number) => (await out.readLogits()).subarray(r * width, (r + 1) * width);

describe("ONNX decoder on the shipped model", () => {
  it("matches PyTorch's logits and hidden state through prefill and one cached step", async () => {
    const { lm } = await shippedModel();
    const first = await lm.prefill(parity.prefill.input_ids[0]);
    assert.ok(maxAbsDiff(await hiddenOf(first), parity.prefill.last_hidden[0]) < 1e-4);
    assert.ok(maxAbsDiff(await logitsOf(first), parity.prefill.last_logits[0]) < 1e-4);
    const second = await lm.step(first.state, [parity.decode.input_ids[0][0]]);
    assert.ok(maxAbsDiff(await logitsOf(second), parity.decode.logits[0]) < 1e-4);
    second.state.dispose();
  });

  it("handles a left-padded batch in the graph exactly as PyTorch does", async () => {
    const { folder } = await shippedModel();
    const session = await ort.InferenceSession.create(folder.onnxPath, { intraOpNumThreads: 1 });
    const i64 = (rows: number[][]) => new ort.Tensor("int64", BigInt64Array.from(rows.flat().map(BigInt)), [rows.length, rows[0].length]);
    const feeds: Record<string, ort.Tensor> = {
      input_ids: i64(parity.prefill.input_ids),
      attention_mask: i64(parity.prefill.attention_mask),
      position_ids: i64(parity.prefill.position_ids),
    };
    for (let i = 0; i < folder.config.numLayers; i++) {
      for (const kv of ["key", "value"])
        feeds[`past_key_values.${i}.${kv}`] = new ort.Tensor("float32", new Float32Array(0), [2, 4, 0, 32]);
    }
    const out = await session.run(feeds);
    const [b, s, v] = out.logits.dims as number[];
    const logits = out.logits.data as Float32Array;
    for (let r = 0; r < b; r++) {
      const last = logits.subarray((r * s + s - 1) * v, (r * s + s) * v);
      assert.ok(maxAbsDiff(last, parity.prefill.last_logits[r]) < 1e-4, `row ${r}`);
    }
    await session.release();
  });

  for (const prepare of [true, false]) {
    const how = prepare ? "the SMC-prepared graph" : "the export as it is";
    const model = prepare ? shippedModel : eagerModel;
    it(`gives the same logits after reordering the cache as recomputing the reordered sequences (${how})`, async () => {
      const { lm, tokenizer } = await model();
      const prompt = tokenizer.encodeProblem("Ava has 12 pens. She buys 30 more pens. How many pens does Ava have now?");
      const v = lm.vocabSize;
      const first = await lm.prefill(prompt);
      const broadcast = first.state.select([0, 0, 0]);
      first.state.dispose();
      const a = await lm.step(broadcast, [40, 41, 42]);
      // Resample: new row 0 descends from old row 2, row 1 from row 0, row 2 from row 2.
      const ancestors = [2, 0, 2];
      const reordered = a.state.select(ancestors);
      a.state.dispose();
      const next = [50, 51, 52];
      const b = await lm.step(reordered, next);
      for (let r = 0; r < 3; r++) {
        const fresh = await lm.prefill([...prompt, 40 + ancestors[r], next[r]]);
        fresh.state.dispose();
        assert.ok(maxAbsDiff(await row(b, r, v), await logitsOf(fresh)) < 1e-4, `row ${r}`);
      }
      b.state.dispose();
    });

    it(`holds a row (null token) without changing what it computes next (${how})`, async () => {
      const { lm, tokenizer } = await model();
      const prompt = tokenizer.encodeProblem("Kira has 7 cards. How many cards does Kira have now?");
      const v = lm.vocabSize;
      const first = await lm.prefill(prompt);
      const two = first.state.select([0, 0]);
      first.state.dispose();
      const a = await lm.step(two, [60, null]);
      const b = await lm.step(a.state, [null, 61]);
      const c = await lm.step(b.state, [62, 63]);
      c.state.dispose();
      const row0 = await lm.prefill([...prompt, 60, 62]);
      const row1 = await lm.prefill([...prompt, 61, 63]);
      row0.state.dispose();
      row1.state.dispose();
      assert.ok(maxAbsDiff(await row(c, 0, v), await logitsOf(row0)) < 1e-4);
      assert.ok(maxAbsDiff(await row(c, 1, v), await logitsOf(row1)) < 1e-4);
    });
  }

  it("reorders the cache only before a step whose rows changed: a broadcast, a resampling, dropped rows", async () => {
    const { lm } = await shippedModel();
    const gathered = (before: number) => kvReordersRun() - before;
    const first = await lm.prefill([1, 20, 30]);
    let n = kvReordersRun();
    const a = await lm.step(first.state.select([0, 0, 0, 0]), [5, 6, 7, 8]);
    first.state.dispose();
    assert.equal(gathered(n), 1, "the broadcast");
    n = kvReordersRun();
    const b = await lm.step(a.state, [9, 9, 9, 9]);
    const c = await lm.step(b.state.select([0, 1, 2, 3]), [10, 10, 10, 10]);
    b.state.dispose();
    assert.equal(gathered(n), 0, "rows unchanged, or selected in their order");
    const d = await lm.step(c.state.select([3, 3, 0, 1]), [11, 11, 11, 11]);
    const e = await lm.step(d.state.select([0, 2]), [12, 12]);
    c.state.dispose();
    d.state.dispose();
    assert.equal(gathered(n), 2, "a resampling, then two rows dropped");
    e.state.dispose();
    for (const out of [first, a, b, c, d, e]) out.release();
  });

  it("refuses a disposed cache, a wrong batch and an empty prompt", async () => {
    const { lm } = await shippedModel();
    const first = await lm.prefill([1, 5]);
    await assert.rejects(lm.step(first.state, [1, 2]), /step got 2 tokens for a batch of 1/);
    first.state.dispose();
    assert.throws(() => first.state.select([0]), /used after it was disposed/);
    await assert.rejects(lm.prefill([]), /at least one token/);
  });
});
