/** Shared pieces of the unit tests: the shipped model, loaded once per process. */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative } from "node:path";
import { CausalLM, RowSamples, StepOutput } from "../../src/engine/lm/causalLm";
import { TokenTwistHead } from "../../src/engine/twist/heads";
import { Rng } from "../../src/engine/util/rng";
import { generate } from "../../src/engine/lm/generate";
import { loadModel, LoadedModel } from "../../src/engine/lm/model/loadModel";
import { KvCache } from "../../src/engine/lm/decoder/kvCache";
import { gsm8kDir, loadProblems } from "../../src/engine/train/data";
import type { TrainConfig } from "../../src/engine/train/trainer";

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
export async function assertGraphDrawsMatchLogits(lm: CausalLM, temperature: number, batch = 4): Promise<number> {
  assert.equal(lm.samplesInGraph, true, "the model should draw in its graph");
  const uniforms = [0.013, 0.5, 0.77, 0.9991].slice(0, batch);
  const first = await lm.prefill([1, 20, 30, 40], { uniforms: [0.3], temperature });
  const rows = first.state.select(uniforms.map(() => 0));
  first.state.dispose();
  const out = await lm.step(rows, [5, 6, 7, 8].slice(0, batch), { uniforms, temperature });
  assert.equal(out.samples!.token.length, batch);
  out.state.dispose();
  first.release();
  const all = await logitsOf(out);
  const V = lm.vocabSize;
  uniforms.forEach((u, r) =>
    assertDraw(out.samples!, r, inverseCdfDraw(all.subarray(r * V, (r + 1) * V), u, temperature), `row ${r} at u = ${u}`),
  );
  return uniforms.length;
}

/**
 * Draws the model makes afterwards from chosen rows of an output (a row twice, as for siblings),
 * untwisted and from a random low-rank token twist's proposal, match the inverse CDF computed here
 * from the logits and the JavaScript twist head.
 */
export async function assertModelDrawsMatchLogits(lm: CausalLM, temperature: number): Promise<void> {
  const first = await lm.prefill([1, 20, 30, 40]);
  const rows = first.state.select([0, 0, 0]);
  first.state.dispose();
  first.release();
  const out = await lm.step(rows, [5, 6, 7]);
  out.state.dispose();
  assert.ok(out.drawRows, "the model should draw where it runs");
  const V = lm.vocabSize;
  const H = lm.hiddenSize;
  const head = TokenTwistHead.init(H, V, 4, new Rng(5));
  const rng = new Rng(6);
  head.p.W.forEach((_, i) => (head.p.W[i] = rng.normal()));
  const picked = [2, 0, 2, 1];
  const uniforms = [0.013, 0.5, 0.77, 0.9991];
  const hidden = await hiddenOf(out, picked);
  const plain = await out.drawRows({ rows: picked, uniforms, temperature });
  const twisted = await out.drawRows({ rows: picked, uniforms, temperature, twist: { weights: head.p } });
  const logPsi = head.logPsiNext({ hidden, hiddenSize: H, prefixes: picked.map(() => []) });
  const logits = await logitsOf(out);
  picked.forEach((r, i) => {
    const row = logits.subarray(r * V, (r + 1) * V);
    assertDraw(plain, i, inverseCdfDraw(row, uniforms[i], temperature), `plain draw ${i} from row ${r}`);
    const expected = inverseCdfDraw(row, uniforms[i], temperature, logPsi.subarray(i * V, (i + 1) * V));
    assertDraw(twisted, i, expected, `twisted draw ${i} from row ${r}`);
    assert.ok(Math.abs(twisted.logPsi![i] - expected.logPsi) < 1e-4, `log ψ ${twisted.logPsi![i]} vs ${expected.logPsi}`);
  });
}

/** The token the inverse CDF of softmax(log p / T + log ψ) gives at u, with log p, log q, log ψ and the largest log p. */
export function inverseCdfDraw(logits: ArrayLike<number>, u: number, temperature: number, logPsi?: ArrayLike<number>) {
  const lse = (xs: number[]) => {
    const m = xs.reduce((a, x) => Math.max(a, x), -Infinity);
    return m + Math.log(xs.reduce((a, x) => a + Math.exp(x - m), 0));
  };
  const x = Array.from(logits);
  const logZ = lse(x);
  const logp = x.map((v) => v - logZ);
  const proposal = logp.map((v, i) => v / temperature + (logPsi ? logPsi[i] : 0));
  const logZq = lse(proposal);
  const logq = proposal.map((v) => v - logZq);
  let token = x.length - 1;
  for (let i = 0, left = u; i < x.length; i++)
    if ((left -= Math.exp(logq[i])) < 0) {
      token = i;
      break;
    }
  return {
    token,
    logp: logp[token],
    logq: logq[token],
    logPsi: logPsi ? logPsi[token] : 0,
    logpMax: logp.reduce((a, x) => Math.max(a, x), -Infinity),
  };
}

function assertDraw(d: RowSamples, i: number, expected: ReturnType<typeof inverseCdfDraw>, what: string): void {
  assert.equal(d.token[i], expected.token, what);
  assert.ok(Math.abs(d.logp[i] - expected.logp) < 1e-4, `${what}: log p ${d.logp[i]} vs ${expected.logp}`);
  assert.ok(Math.abs(d.logq[i] - expected.logq) < 1e-4, `${what}: log q ${d.logq[i]} vs ${expected.logq}`);
  assert.ok(Math.abs(d.logpMax[i] - expected.logpMax) < 1e-4, `${what}: largest log p ${d.logpMax[i]} vs ${expected.logpMax}`);
}

/** An output's hidden state of the given rows (default: row 0), one after the other; the output is not released. */
export async function hiddenOf(out: StepOutput, rows: readonly number[] = [0]): Promise<Float32Array> {
  assert.ok(out.readHidden, "the model should expose its hidden state");
  return Float32Array.from((await out.readHidden(rows)).flatMap((row) => [...row]));
}

/** An output's logits, read once; the output is released (on a GPU its logits are freed). */
export async function logitsOf(out: StepOutput): Promise<Float32Array> {
  try {
    return await out.readLogits();
  } finally {
    out.release();
  }
}

/** The largest absolute difference between two equally long arrays. */
export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

/**
 * A prefill, a broadcast, steps with held rows, resamplings and batches that grow and shrink, past two
 * growths of a fixed-capacity cache (capacity step 8): its logits and hidden states must be the growing
 * cache's. Returns each step's cache capacity and the batch its tensors hold: on the CPU the rows
 * (HELD_ROW_BATCHES), on a GPU the next power of two (FIXED_CAPACITY_STORED_BATCHES).
 */
export const HELD_ROW_BATCHES = [...Array(11).fill(3), 5, 5, 5, 3, 3, 3, 2, 2, 3, 3, 3];
export const FIXED_CAPACITY_STORED_BATCHES = [...Array(11).fill(4), 8, 8, 8, 4, 4, 4, 2, 2, 4, 4, 4];

/** The 22 steps both checks below take, from 3 rows: step t's tokens (null: a held row) for a batch. */
const HELD_ROW_STEPS = 22;
const stepTokens = (t: number, batch: number) =>
  Array.from({ length: batch }, (_, r) => ((r === 0 && t % 3 === 1) || (r === 2 && t % 4 === 2) ? null : 5 + t + 3 * r));
/** The rows kept after step t: resamplings; the batch goes 3, 5, 3, 2 (finished rows dropped), 3. */
const stepRows = (t: number, batch: number) =>
  t === 10 ? [2, 0, 1, 1, 0] : t === 16 ? [1, 2] : t % 5 === 3 ? [batch - 1, 0, 0] : Array.from({ length: batch }, (_, r) => r);

export async function assertSameAsGrowingCache(
  fixed: LoadedModel,
  growing: LoadedModel,
  tolerance: number,
): Promise<{ capacities: number[]; stored: number[] }> {
  const prompt = [1, 20, 30, 40, 7];
  const [a, b] = [await fixed.lm.prefill(prompt), await growing.lm.prefill(prompt)];
  let [x, y] = [a.state.select([0, 0, 0]), b.state.select([0, 0, 0])];
  assert.ok(maxAbsDiff(await logitsOf(a), await logitsOf(b)) < tolerance);
  a.state.dispose();
  b.state.dispose();
  const capacities: number[] = [];
  const stored: number[] = [];
  for (let t = 0; t < HELD_ROW_STEPS; t++) {
    const tokens = stepTokens(t, x.batch);
    const [p, q] = [await fixed.lm.step(x, tokens), await growing.lm.step(y, tokens)];
    capacities.push((p.state as KvCache).length);
    stored.push((p.state as KvCache).storeBatch);
    // A held row's output is never read (the growing cache masks its slot, even from itself).
    const fed = tokens.flatMap((tok, r) => (tok === null ? [] : [r]));
    assert.ok(maxAbsDiff(await hiddenOf(p, fed), await hiddenOf(q, fed)) < tolerance, `hidden states, step ${t}`);
    const [lp, lq] = [await logitsOf(p), await logitsOf(q)];
    assert.equal(lp.length, lq.length, `logits of a batch of ${tokens.length}, step ${t}`);
    const v = lp.length / tokens.length;
    for (const r of fed)
      assert.ok(maxAbsDiff(lp.subarray(r * v, (r + 1) * v), lq.subarray(r * v, (r + 1) * v)) < tolerance, `logits of row ${r}, step ${t}`);
    const rows = stepRows(t, x.batch);
    [x, y] = [p.state.select(rows), q.state.select(rows)];
    p.state.dispose();
    q.state.dispose();
  }
  x.dispose();
  y.dispose();
  return { capacities, stored };
}

/**
 * The steps of assertSameAsGrowingCache (held rows, resamplings, batches that grow and shrink), each fed
 * row's logits against `reference`'s prefill of that row's tokens so far, with no slot left by a held
 * row: what a cache that leaves no hole must compute (a sliding window counts the row's own tokens).
 * Returns the largest difference.
 */
export async function assertSameAsFreshPrefill(model: LoadedModel, reference: LoadedModel, tolerance: number): Promise<number> {
  const prompt = [1, 20, 30, 40, 7];
  const first = await model.lm.prefill(prompt);
  let x = first.state.select([0, 0, 0]);
  first.state.dispose();
  let rowsTokens = [prompt, prompt, prompt];
  let worst = 0;
  // A failed check leaves no state alive (later tests count the live KV caches).
  let out: StepOutput | undefined;
  try {
    for (let t = 0; t < HELD_ROW_STEPS; t++) {
      const tokens = stepTokens(t, x.batch);
      out = await model.lm.step(x, tokens);
      const lp = await logitsOf(out);
      const v = lp.length / tokens.length;
      rowsTokens = rowsTokens.map((row, r) => (tokens[r] === null ? row : [...row, tokens[r]!]));
      for (const [r, tok] of tokens.entries()) {
        if (tok === null) continue;
        const q = await reference.lm.prefill(rowsTokens[r]);
        const diff = maxAbsDiff(lp.subarray(r * v, (r + 1) * v), await logitsOf(q));
        q.state.dispose();
        assert.ok(diff < tolerance, `logits of row ${r} (${rowsTokens[r].length} tokens), step ${t}: ${diff}`);
        worst = Math.max(worst, diff);
      }
      const rows = stepRows(t, x.batch);
      x = out.state.select(rows);
      rowsTokens = rows.map((r) => rowsTokens[r]);
      out.state.dispose();
      out = undefined;
    }
  } finally {
    out?.state.dispose();
    x.dispose();
  }
  return worst;
}

/** A training run small enough for a test: 4 synthetic problems, one epoch, a rank-4 token twist. */
export function tinyTrainConfig(outputDir: string, over: Partial<TrainConfig> = {}): TrainConfig {
  return {
    numExamples: 4,
    numEpochs: 1,
    batchSize: 2,
    learningRate: 0.05,
    outputDir,
    seed: 1,
    split: "train",
    outputLength: 24,
    numTwistSamples: 3,
    twistUpdatesPerExample: 1,
    saveEvery: 1,
    dataset: "synthetic",
    loss: "ctl",
    twist: "token",
    rank: 4,
    rewardFloor: 0.001,
    contrastWeight: 1,
    replay: 0,
    resume: false,
    ...over,
  };
}

/** GSM8K's folder when it is there (it is not shipped: looked for beside the checkout, as the trainer does). */
export function gsm8kIfPresent(): string | undefined {
  try {
    const dir = gsm8kDir();
    return existsSync(join(dir, "test.jsonl")) ? dir : undefined;
  } catch {
    return undefined;
  }
}

/** Each file below a folder by its relative path: its sha256 and mtime, to show a folder was left as it was. */
export function folderSnapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else out[relative(dir, p)] = createHash("sha256").update(readFileSync(p)).digest("hex") + ` ${statSync(p).mtimeMs}`;
    }
  };
  walk(dir);
  return out;
}
