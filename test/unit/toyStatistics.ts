/**
 * The statistical checks of twisted SMC on an enumerable model, shared by the in-process toy model's
 * tests and the same checks on a real ONNX decoder running on the GPU path: twists and potentials
 * over the toy vocabulary, mean Ẑ against the exact Z, and a chi-square test of plain sampling.
 */
import { CausalLM } from "../../src/engine/lm/causalLm";
import { StepTwist, TokenTwist, TwistInput } from "../../src/engine/smc/twist";
import { runTwistedSmc, SmcOptions } from "../../src/engine/smc/twistedSmc";
import { hashUnit, TOY_EOS, TOY_MAX_TOKENS, TOY_VOCAB, toyDecode, ToySequence } from "./toyModel";

/** A strictly positive final potential (any φ works for the unbiasedness of Ẑ). */
export const logPhi = (text: string) => Math.log(0.05 + 2 * hashUnit(`phi|${text}`));

export const randomLogPsi = (prefix: readonly number[]) => Math.log(0.2 + 3 * hashUnit(`rand|${prefix.join(",")}`));

export function tokenTwistFrom(logPsi: (prefix: readonly number[]) => number, eosLogPsi: (prefix: readonly number[]) => number): TokenTwist {
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
    isEos: (t) => t === TOY_EOS,
    isLineEnd: (t) => t === 0,
    decode: toyDecode,
    ...over,
  };
}

/** Ẑ over independent runs (seeds 1000, 1001, …): mean, standard error and every value. */
export async function meanZ(lm: CausalLM, prompt: readonly number[], over: Partial<SmcOptions>, runs: number) {
  const zs: number[] = [];
  for (let r = 0; r < runs; r++) zs.push(Math.exp((await runTwistedSmc(lm, prompt, toyOptions({ ...over, seed: 1000 + r }))).logZ));
  const mean = zs.reduce((a, b) => a + b, 0) / runs;
  const sd = Math.sqrt(zs.reduce((a, b) => a + (b - mean) ** 2, 0) / (runs - 1));
  return { mean, se: sd / Math.sqrt(runs), zs };
}

/**
 * With ψ ≡ 1 and φ ≡ 1 the particles should be draws from p: Pearson's chi-square of their sequences
 * against the enumerated probabilities (rare sequences pooled), and any sequence p cannot produce.
 */
export async function chiSquareOfSamples(lm: CausalLM, prompt: readonly number[], sequences: readonly ToySequence[], runs: number, particles: number) {
  const counts = new Map<string, number>();
  let n = 0;
  let resampled = 0;
  let maxAbsLogZ = 0;
  for (let r = 0; r < runs; r++) {
    const res = await runTwistedSmc(lm, prompt, toyOptions({ particles, seed: r }));
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
