/**
 * The line verifier's base rate per operator, set from the model's own outcomes: a shift b_op added to
 * the logit of every line of that operator, fitted by maximum likelihood of whether plain samples ended
 * right under φ = Π σ(ℓ(line) + b_op(line)). `train` fits it on problems after the run's, which none of
 * its steps read (partialResults.ts, calibrationProblems): on problems the epochs had read, the verifier
 * has seen the very lines and rates them higher than on new ones.
 *
 * Why: the verifier learns from the lines outcomes label and from contrasts (lineContrasts.ts), one-digit
 * changes of a right result asserted wrong with a fixed weight. Where it cannot tell a right line from
 * its contrasts — multiplication and division, whose digits it reads column by column — those contrasts
 * set its estimate near the contrasts' share, not near how often the model's lines are right: on 16 plain
 * samples of 500 training problems no run reads, the shipped verifier under-rated × and ÷ lines by about
 * 2 in logit (fitted shifts +0.15, +0.15, +1.95, +2.05 for + − × ÷). φ is the final potential of `solve`'s
 * posterior over answers, so it should say how often a solution is right (docs/token-twist.md, "Ninth
 * step": the log-likelihood of unseen samples' outcomes −0.389 → −0.327, the votes a little higher).
 *
 * Only the base rates move, one number per operator: how the verifier ranks lines of one operator is
 * left as the outcomes taught it. Nothing here knows arithmetic.
 */
import { LineVerifier } from "../twist/lineVerifier";
import { OPERATORS } from "../twist/arithmeticLines";
import { logSigmoid } from "../twist/heads";
import type { SampleOutcomes } from "./samples";

/** The shifts searched, in logits: beyond ±6 a base rate is 0 or 1 to within 0.25%. */
const SHIFT_RANGE = 6;
/** Sweeps over the operators (coordinate ascent; the likelihood changes little after the second). */
const SWEEPS = 3;
/** φ is kept this far from 0 and 1, so one confident wrong sample cannot make the likelihood −∞. */
const PHI_FLOOR = 1e-6;

/** One sample as calibration reads it: its readable lines' logits and operators, and its outcome. */
interface ScoredSample {
  logits: Float64Array;
  ops: Int32Array;
  correct: boolean;
}

export interface Calibration {
  /** The verifier with its shifts added to its operators' biases (a copy; the input is left alone). */
  verifier: LineVerifier;
  /** b_op in OPERATORS order (+ − × ÷). */
  shifts: number[];
  /** Mean log-likelihood of the samples' outcomes per sample, before and after. */
  before: number;
  after: number;
  /** Samples with a line the verifier reads (the others do not depend on the shifts). */
  samples: number;
}

/** The verifier's per-operator base rates fitted to the samples' outcomes (see the file's comment). */
export function calibrateVerifier(verifier: LineVerifier, outcomes: readonly SampleOutcomes[]): Calibration {
  const scored: ScoredSample[] = [];
  for (const { texts, correct } of outcomes)
    texts.forEach((text, i) => {
      const lines = verifier.encode(text);
      if (lines.length)
        scored.push({
          logits: Float64Array.from(lines, (l) => verifier.lineLogit(l)),
          ops: Int32Array.from(lines, (l) => l[0]),
          correct: correct[i],
        });
    });
  const shifts = new Array<number>(OPERATORS.length).fill(0);
  const before = meanLogLikelihood(scored, shifts);
  const used = new Set(scored.flatMap((s) => [...s.ops]));
  for (let sweep = 0; sweep < SWEEPS; sweep++)
    for (let op = 0; op < shifts.length; op++) {
      if (!used.has(op)) continue;
      shifts[op] = bestShift((b) =>
        meanLogLikelihood(
          scored,
          shifts.map((x, k) => (k === op ? b : x)),
        ),
      );
    }
  const after = meanLogLikelihood(scored, shifts);
  const copy = verifier.copy();
  shifts.forEach((b, op) => (copy.p.bias[op] += b));
  return { verifier: copy, shifts, before, after, samples: scored.length };
}

/** Mean over the samples of log P(outcome) under φ = Π σ(ℓ + b_op). */
function meanLogLikelihood(samples: readonly ScoredSample[], shifts: readonly number[]): number {
  if (!samples.length) return 0;
  let sum = 0;
  for (const { logits, ops, correct } of samples) {
    let logPhi = 0;
    for (let i = 0; i < logits.length; i++) logPhi += logSigmoid(logits[i] + shifts[ops[i]]);
    const phi = Math.min(Math.max(Math.exp(logPhi), PHI_FLOOR), 1 - PHI_FLOOR);
    sum += correct ? Math.log(phi) : Math.log1p(-phi);
  }
  return sum / samples.length;
}

/**
 * The shift in [−SHIFT_RANGE, SHIFT_RANGE] that maximises f: the best of a grid of quarter logits, then
 * a golden-section search around it (deterministic; f need not be concave across the whole range).
 */
function bestShift(f: (b: number) => number): number {
  const step = 0.25;
  let best = 0,
    bestValue = -Infinity;
  for (let b = -SHIFT_RANGE; b <= SHIFT_RANGE + 1e-9; b += step) {
    const v = f(b);
    if (v > bestValue) [best, bestValue] = [b, v];
  }
  const ratio = (Math.sqrt(5) - 1) / 2;
  let lo = Math.max(best - step, -SHIFT_RANGE),
    hi = Math.min(best + step, SHIFT_RANGE);
  let x1 = hi - ratio * (hi - lo),
    x2 = lo + ratio * (hi - lo);
  let f1 = f(x1),
    f2 = f(x2);
  for (let i = 0; i < 30; i++) {
    if (f1 >= f2) {
      hi = x2;
      [x2, f2] = [x1, f1];
      x1 = hi - ratio * (hi - lo);
      f1 = f(x1);
    } else {
      lo = x1;
      [x1, f1] = [x2, f2];
      x2 = lo + ratio * (hi - lo);
      f2 = f(x2);
    }
  }
  const mid = (lo + hi) / 2;
  return f(mid) >= bestValue ? mid : best;
}
