/** Shared pieces of the unit tests: the shipped model, loaded once per process. */
import assert from "node:assert/strict";
import { join } from "node:path";
import { generate } from "../../src/engine/lm/generate";
import { loadModel, LoadedModel } from "../../src/engine/lm/loadModel";
import { loadProblems } from "../../src/engine/train/data";

export const MODEL_DIR = join(__dirname, "../../models/tiny-math-llama");

let shared: Promise<LoadedModel> | undefined;

/** The shipped model on one thread, so results and timings do not depend on the machine's cores. */
export function shippedModel(): Promise<LoadedModel> {
  shared ??= loadModel(MODEL_DIR, { threads: 1 });
  return shared;
}

/** Greedy solutions of `n` synthetic test problems by two models of one tokenizer must be the same text. */
export async function assertSameGreedy(a: LoadedModel, b: LoadedModel, n: number): Promise<void> {
  const { problems } = loadProblems("synthetic", "test", n, 0);
  for (const p of problems) {
    const prompt = b.tokenizer.encodeProblem(p.question);
    const options = { numSamples: 1, maxTokens: 64, temperature: 0, seed: 0, isEos: (t: number) => b.tokenizer.isEos(t) };
    const [x, y] = [await generate(a.lm, prompt, options), await generate(b.lm, prompt, options)];
    assert.equal(b.tokenizer.decode(x.sequences[0].tokens), b.tokenizer.decode(y.sequences[0].tokens), p.question);
  }
}
