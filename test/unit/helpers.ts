/** Shared pieces of the unit tests: the shipped model, loaded once per process. */
import assert from "node:assert/strict";
import { join } from "node:path";
import { CausalLM, StepOutput } from "../../src/engine/lm/causalLm";
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

/**
 * A prefill, a gather to four rows and a step, asking the model to draw in its graph at the given
 * uniforms: each draw must be the token the inverse CDF of the row's tempered softmax gives at that
 * uniform (computed here in float64 from the returned logits), with its log p, log q and the row's
 * largest log p. Returns how many draws were checked.
 */
export async function assertGraphDrawsMatchLogits(lm: CausalLM, temperature: number): Promise<number> {
  assert.equal(lm.samplesInGraph, true, "the model should draw in its graph");
  const uniforms = [0.013, 0.5, 0.77, 0.9991];
  const first = await lm.prefill([1, 20, 30, 40], { uniforms: [0.3], temperature });
  const rows = first.state.select([0, 0, 0, 0]);
  first.state.dispose();
  const out = await lm.step(rows, [5, 6, 7, 8], { uniforms, temperature });
  out.state.dispose();
  first.release();
  const all = await logitsOf(out);
  const V = lm.vocabSize;
  uniforms.forEach((u, r) => {
    const logits = Array.from(all.subarray(r * V, (r + 1) * V));
    const lse = (xs: number[]) => {
      const m = Math.max(...xs);
      return m + Math.log(xs.reduce((a, x) => a + Math.exp(x - m), 0));
    };
    const logp = logits.map((x) => x - lse(logits));
    const tempered = logp.map((x) => x / temperature);
    const logq = tempered.map((x) => x - lse(tempered));
    let expected = V - 1;
    for (let i = 0, left = u; i < V; i++) if ((left -= Math.exp(logq[i])) < 0) {
      expected = i;
      break;
    }
    const d = out.samples!;
    assert.equal(d.token[r], expected, `row ${r} at u = ${u}`);
    assert.ok(Math.abs(d.logp[r] - logp[expected]) < 1e-4, `log p ${d.logp[r]} vs ${logp[expected]}`);
    assert.ok(Math.abs(d.logq[r] - logq[expected]) < 1e-4, `log q ${d.logq[r]} vs ${logq[expected]}`);
    assert.ok(Math.abs(d.logpMax[r] - Math.max(...logp)) < 1e-4);
  });
  return uniforms.length;
}

/** The largest absolute difference between two equally long arrays. */
/** An output's logits, read once; the output is released (on a GPU its logits are freed). */
export async function logitsOf(out: StepOutput): Promise<Float32Array> {
  try {
    return await out.readLogits();
  } finally {
    out.release();
  }
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}
