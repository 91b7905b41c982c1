/**
 * The statistical checks of twisted SMC on an enumerable model, shared by the in-process toy model's
 * tests and the same checks on a real ONNX decoder running on the GPU path: twists and potentials
 * over the toy vocabulary, mean Ẑ against the exact Z, and a chi-square test of plain sampling.
 */
import { CausalLM } from "../../src/engine/lm/causalLm";
import { StepTwist, TokenTwist, TwistInput } from "../../src/engine/smc/twist";
import { runTwistedSmc, SmcOptions, SmcRunResult } from "../../src/engine/smc/twistedSmc";
import assert from "node:assert/strict";
import { exactTwist, hashUnit, TOY_EOS, TOY_MAX_TOKENS, TOY_PROMPT, TOY_VOCAB, toyDecode, ToyLogProbs, ToySequence } from "./toyModel";
import { hiddenOf, logitsOf } from "./helpers";
import { TokenTwistHead } from "../../src/engine/twist/heads";
import { OnnxTokenTwist } from "../../src/engine/twist/onnxTwist";
import { Rng } from "../../src/engine/util/rng";

/** A strictly positive final potential (any φ works for the unbiasedness of Ẑ). */
export const logPhi = (text: string) => Math.log(0.05 + 2 * hashUnit(`phi|${text}`));

export const randomLogPsi = (prefix: readonly number[]) => Math.log(0.2 + 3 * hashUnit(`rand|${prefix.join(",")}`));

export function tokenTwistFrom(
  logPsi: (prefix: readonly number[]) => number,
  eosLogPsi: (prefix: readonly number[]) => number,
): TokenTwist {
  return {
    kind: "token",
    logPsiNext(input: TwistInput) {
      const out = new Float32Array(input.prefixes.length * TOY_VOCAB);
      input.prefixes.forEach((p, r) => {
        for (let s = 0; s < TOY_VOCAB; s++) out[r * TOY_VOCAB + s] = s === TOY_EOS ? eosLogPsi(p) : logPsi([...p, s]);
      });
      return out;
    },
  };
}

export function stepTwistFrom(logPsi: (prefix: readonly number[]) => number): StepTwist {
  return { kind: "step", logValue: (input) => Float64Array.from(input.prefixes, (p) => logPsi(p)) };
}

/** SMC options for the toy vocabulary: EOS is token 3, token 0 ends a "line" (for step level). */
export function toyOptions(over: Partial<SmcOptions>): SmcOptions {
  return {
    particles: 8,
    level: "token",
    resampling: "systematic",
    essThreshold: 0.5,
    resample: "adaptive",
    maxTokens: TOY_MAX_TOKENS,
    temperature: 1,
    seed: 0,
    text: { isEos: (t) => t === TOY_EOS, isLineEnd: (t) => t === 0, decode: toyDecode },
    ...over,
  };
}

/** One SMC run over a prompt: the local loop over a model by default (lineSmc.test.ts passes the line loop). */
export type SmcRunner = (prompt: readonly number[], options: SmcOptions) => Promise<SmcRunResult>;

/** Ẑ over independent runs (seeds 1000, 1001, …): mean, standard error and every value. */
export async function meanZ(
  lm: CausalLM,
  prompt: readonly number[],
  over: Partial<SmcOptions>,
  runs: number,
  run: SmcRunner = (p, o) => runTwistedSmc(lm, p, o),
) {
  const zs: number[] = [];
  for (let r = 0; r < runs; r++) zs.push(Math.exp((await run(prompt, toyOptions({ ...over, seed: 1000 + r }))).logZ));
  const mean = zs.reduce((a, b) => a + b, 0) / runs;
  const sd = Math.sqrt(zs.reduce((a, b) => a + (b - mean) ** 2, 0) / (runs - 1));
  return { mean, se: sd / Math.sqrt(runs), zs };
}

/**
 * With ψ ≡ 1 and φ ≡ 1 the particles should be draws from p: Pearson's chi-square of their sequences
 * against the enumerated probabilities (rare sequences pooled), and any sequence p cannot produce.
 */
export async function chiSquareOfSamples(
  lm: CausalLM,
  prompt: readonly number[],
  sequences: readonly ToySequence[],
  runs: number,
  particles: number,
  run: SmcRunner = (p, o) => runTwistedSmc(lm, p, o),
) {
  const counts = new Map<string, number>();
  let n = 0;
  let resampled = 0;
  let maxAbsLogZ = 0;
  for (let r = 0; r < runs; r++) {
    const res = await run(prompt, toyOptions({ particles, seed: r }));
    resampled += res.resampledAt.length;
    maxAbsLogZ = Math.max(maxAbsLogZ, Math.abs(res.logZ));
    for (const p of res.particles) {
      const key = `${p.tokens.join(",")}|${p.finishReason}`;
      counts.set(key, (counts.get(key) ?? 0) + 1);
      n++;
    }
  }
  // Pearson's statistic needs expected counts of about 5 or more: rarer sequences share one cell.
  let chi2 = 0;
  let cells = 0;
  let rareExpected = 0;
  let rareObserved = 0;
  for (const s of sequences) {
    const key = `${s.tokens.join(",")}|${s.tokens.length >= TOY_MAX_TOKENS ? "length" : "eos"}`;
    const expected = n * Math.exp(s.logP);
    const observed = counts.get(key) ?? 0;
    counts.delete(key);
    if (expected < 5) {
      rareExpected += expected;
      rareObserved += observed;
      continue;
    }
    chi2 += (observed - expected) ** 2 / expected;
    cells++;
  }
  if (rareExpected > 0) {
    chi2 += (rareObserved - rareExpected) ** 2 / rareExpected;
    cells++;
  }
  const df = cells - 1;
  return { chi2, df, bound: df + 5 * Math.sqrt(2 * df), impossible: [...counts.keys()], resampled, maxAbsLogZ };
}

/**
 * A real decoder with the toy vocabulary (test/fixtures/gpt2-four-tokens): its next-token
 * log-probabilities after TOY_PROMPT for every prefix the toy enumeration visits, read with the
 * JavaScript softmax from its logits, for exactTwist and enumerateToy.
 */
export async function enumerateDecoder(lm: CausalLM): Promise<ToyLogProbs> {
  if (lm.vocabSize !== TOY_VOCAB) throw new RangeError(`the toy enumeration needs a vocabulary of ${TOY_VOCAB}, not ${lm.vocabSize}`);
  const table = new Map<string, number[]>();
  const walk = async (prefix: number[]) => {
    const out = await lm.prefill([...TOY_PROMPT, ...prefix]);
    out.state.dispose();
    const logits = await logitsOf(out);
    const max = Math.max(...logits);
    const lse = max + Math.log(logits.reduce((a, x) => a + Math.exp(x - max), 0));
    table.set(
      prefix.join(","),
      Array.from(logits, (x) => x - lse),
    );
    if (prefix.length + 1 < TOY_MAX_TOKENS) for (let s = 0; s < TOY_EOS; s++) await walk([...prefix, s]);
  };
  await walk([]);
  return (prefix) => table.get(prefix.join(","))!;
}

/**
 * The exact normaliser of token-level SMC with a token twist and no final potential: the weights
 * telescope to ψ of each sequence's last token (EOS, or the token where it was cut), so
 * Z = Σ p(sequence)·ψ(last token | its prefix), enumerated on `lm` with the JavaScript head.
 */
export async function twistedZ(lm: CausalLM, head: TokenTwistHead): Promise<number> {
  let z = 0;
  const walk = async (prefix: number[], logP: number) => {
    const out = await lm.prefill([...TOY_PROMPT, ...prefix]);
    out.state.dispose();
    const hidden = await hiddenOf(out);
    const logits = await logitsOf(out);
    const max = Math.max(...logits);
    const lse = max + Math.log(logits.reduce((a, x) => a + Math.exp(x - max), 0));
    const logPsi = head.logPsiNext({ hidden, hiddenSize: lm.hiddenSize, prefixes: [prefix] });
    for (let s = 0; s < TOY_VOCAB; s++) {
      const next = logP + logits[s] - lse;
      if (s === TOY_EOS || prefix.length + 1 >= TOY_MAX_TOKENS) z += Math.exp(next + logPsi[s]);
      else await walk([...prefix, s], next);
    }
  };
  await walk([], 0);
  return z;
}

/**
 * The toy-model checks on a real decoder with the toy vocabulary whose exact log-probabilities are
 * known: registers mocha tests. Where the decoder draws in its graph, the untwisted proposals (step
 * level, and plain sampling) take their tokens from it, and the token twists from JavaScript.
 */
export function toyStatisticsOnDecoder(load: () => Promise<{ lm: CausalLM; logProbs: ToyLogProbs; reference: CausalLM }>): void {
  let lm: CausalLM;
  let reference: CausalLM;
  let exact: ReturnType<typeof exactTwist>;
  before(async function () {
    this.timeout(120000);
    const loaded = await load();
    lm = loaded.lm;
    reference = loaded.reference;
    exact = exactTwist(logPhi, loaded.logProbs);
    // Not a degenerate target: no sequence holds most of the mass.
    assert.ok(Math.max(...exact.sequences.map((s) => Math.exp(s.logP))) < 0.5);
  });

  it("token level with a random twist: mean Ẑ is within 3 standard errors of the exact Z", async () => {
    const { mean, se } = await meanZ(
      lm,
      TOY_PROMPT,
      { twist: tokenTwistFrom(randomLogPsi, randomLogPsi), logFinalPotential: logPhi, essThreshold: 0.8 },
      200,
    );
    assert.ok(Math.abs(mean - exact.z) < 3 * se, `mean ${mean} vs Z ${exact.z} (se ${se})`);
  });

  it("step level with a random value twist, resampling at every line: mean Ẑ is within 3 standard errors of the exact Z", async () => {
    const { mean, se } = await meanZ(
      lm,
      TOY_PROMPT,
      { level: "step", twist: stepTwistFrom(randomLogPsi), logFinalPotential: logPhi, resample: "always" },
      200,
    );
    assert.ok(Math.abs(mean - exact.z) < 3 * se, `mean ${mean} vs Z ${exact.z} (se ${se})`);
  });

  it("with the exact optimal token twist every run returns Z (up to float32 logits)", async () => {
    const optimal = tokenTwistFrom(exact.logPsi, (p) => logPhi(toyDecode(p)));
    const { zs } = await meanZ(lm, TOY_PROMPT, { twist: optimal, logFinalPotential: logPhi, resample: "always" }, 20);
    for (const z of zs) assert.ok(Math.abs(z - exact.z) < 1e-3 * exact.z, `${z} vs ${exact.z}`);
  });

  it("with ψ ≡ 1 and φ ≡ 1 the particles are draws from the model (chi-square)", async () => {
    const c = await chiSquareOfSamples(lm, TOY_PROMPT, exact.sequences, 20, 500);
    assert.equal(c.resampled, 0);
    assert.deepEqual(c.impossible, [], "sequences the model cannot produce");
    assert.ok(c.chi2 < c.bound, `chi2 ${c.chi2.toFixed(1)} with ${c.df} degrees of freedom`);
  });

  it("token level with a random low-rank twist and no final potential: mean Ẑ is within 3 standard errors of Σ p·ψ(last token)", async () => {
    const head = TokenTwistHead.init(lm.hiddenSize, TOY_VOCAB, 3, new Rng(21));
    const rng = new Rng(22);
    head.p.W.forEach((_, i) => (head.p.W[i] = rng.normal()));
    head.p.b.forEach((_, i) => (head.p.b[i] = rng.normal()));
    const twist = await OnnxTokenTwist.create(head);
    try {
      const z = await twistedZ(reference, head);
      const { mean, se } = await meanZ(lm, TOY_PROMPT, { twist, essThreshold: 0.8 }, 200);
      assert.ok(Math.abs(mean - z) < 3 * se, `mean ${mean} vs Z ${z} (se ${se})`);
      // Where the decoder draws in its graph, it evaluates this twist there too: every token is drawn so.
      const run = await runTwistedSmc(lm, TOY_PROMPT, toyOptions({ twist, particles: 16, seed: 3 }));
      assert.equal(run.drawnInGraph, lm.samplesInGraph ? run.generatedTokens : 0);
    } finally {
      await twist.dispose();
    }
  });

  it("draws the untwisted proposals in the graph where the decoder can", async function () {
    const run = await runTwistedSmc(
      lm,
      TOY_PROMPT,
      toyOptions({ level: "step", twist: stepTwistFrom(randomLogPsi), particles: 64, resample: "always", seed: 3 }),
    );
    assert.ok(run.resampledAt.length > 0);
    // Also the 63 extra copies of the prompt's row and the siblings after each resampling.
    assert.equal(run.drawnInGraph, lm.samplesInGraph ? run.generatedTokens : 0);
  });
}
