import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { generate } from "../../src/engine/lm/generate";
import { extractAnswer } from "../../src/engine/math/answer";
import { synthesize } from "../../src/engine/math/problems";
import { MODEL_DIR, shippedModel } from "./helpers";

const measured = JSON.parse(readFileSync(join(MODEL_DIR, "measurements.json"), "utf8"));
const card = readFileSync(join(MODEL_DIR, "README.md"), "utf8");

describe("the shipped model and its model card", () => {
  it("gives the greedy solutions the measurements record on fixed test problems", async () => {
    const { lm, tokenizer } = await shippedModel();
    const problems = synthesize("test", measured.examples.length, measured.testProblems.seed);
    for (const [i, ex] of measured.examples.entries()) {
      assert.equal(problems[i].question, ex.question);
      const r = await generate(lm, tokenizer.encodeProblem(ex.question), { numSamples: 1, maxTokens: 96, temperature: 0, seed: 0, isEos: (t) => tokenizer.isEos(t) });
      const text = tokenizer.decode(r.sequences[0].tokens);
      assert.equal(text, ex.greedy);
      assert.equal(extractAnswer(text)?.key ?? null, ex.greedyAnswer);
    }
  });

  it("is imperfect on purpose, and the card quotes the measured numbers", () => {
    assert.ok(measured.singleSampleT1.accuracy >= 0.25 && measured.singleSampleT1.accuracy <= 0.75);
    for (const key of ["greedy", "singleSampleT1", "majorityAt16", "passAt16"]) {
      assert.ok(card.includes(`${(100 * measured[key].accuracy).toFixed(1)}%`), `the card quotes ${key}`);
    }
  });
});
