import assert from "node:assert/strict";
import { generate } from "../../src/engine/lm/generate";
import { shippedModel } from "./helpers";

describe("batched sampling", () => {
  const question = "Ben has 24 apples. He gives away 9 apples. How many apples does Ben have now?";

  it("is reproducible for a seed and varies across seeds", async () => {
    const { lm, tokenizer } = await shippedModel();
    // A five-step problem, where the model is unsure enough for samples to differ.
    const prompt = tokenizer.encodeProblem(
      "A class collects 398 marbles. Each of those marbles is traded for 2 new ones. 205 of the marbles are broken and thrown away. Another class gives them 24 marbles. The marbles are shared equally among 5 groups, and Umar's group keeps its share. How many marbles are left in the end?",
    );
    const opts = { numSamples: 8, maxTokens: 60, temperature: 1, isEos: (t: number) => tokenizer.isEos(t) };
    const a = await generate(lm, prompt, { ...opts, seed: 3 });
    const b = await generate(lm, prompt, { ...opts, seed: 3 });
    const c = await generate(lm, prompt, { ...opts, seed: 4 });
    assert.deepEqual(a.sequences, b.sequences);
    assert.notDeepEqual(a.sequences, c.sequences);
    assert.equal(
      a.generatedTokens,
      a.sequences.reduce((n, s) => n + s.tokens.length + (s.finishReason === "eos" ? 1 : 0), 0),
    );
  });

  it("gives K identical greedy rows equal to a single greedy row, whatever rows finish early", async () => {
    const { lm, tokenizer } = await shippedModel();
    const prompt = tokenizer.encodeProblem(question);
    const opts = { maxTokens: 60, temperature: 0, seed: 0, isEos: (t: number) => tokenizer.isEos(t) };
    const one = await generate(lm, prompt, { ...opts, numSamples: 1 });
    const many = await generate(lm, prompt, { ...opts, numSamples: 5 });
    for (const s of many.sequences) assert.deepEqual(s, one.sequences[0]);
    assert.equal(one.sequences[0].finishReason, "eos");
  });

  it("stops at max tokens and says so", async () => {
    const { lm, tokenizer } = await shippedModel();
    const r = await generate(lm, tokenizer.encodeProblem(question), {
      numSamples: 3,
      maxTokens: 2,
      temperature: 1,
      seed: 1,
      isEos: () => false,
    });
    for (const s of r.sequences) {
      assert.equal(s.tokens.length, 2);
      assert.equal(s.finishReason, "length");
    }
  });

  it("rejects nonsense options", async () => {
    const { lm } = await shippedModel();
    await assert.rejects(generate(lm, [1], { numSamples: 0, maxTokens: 5, temperature: 1, seed: 0, isEos: () => false }), /numSamples/);
    await assert.rejects(generate(lm, [1], { numSamples: 1, maxTokens: 5, temperature: NaN, seed: 0, isEos: () => false }), /temperature/);
  });
});
