/**
 * The line verifier's known-answer floor ε (lineVerifier.ts, knownAnswerFloor), fitted by maximum
 * likelihood of whether plain samples ended right under P(right) = Π_lines (ε + (1 − ε)·σ(ℓ(line))).
 *
 * Why: φ = Π σ(ℓ) rates a solution with a line that does not hold near 0, and for the posterior over
 * answers that is what works (the final potential φ^γ, twelfth step). But against the answer itself this
 * model lands back on the right value after some of its slips (8.7% of the lines that do not hold still
 * end right, docs/token-twist.md, "Eleventh step"), and when the final potential is the known answer
 * (eval's log Ẑ bounds, solve --gold), a twist near 0 on those paths gives the right answers reached
 * through them weights p/q ≫ 1, seldom drawn: the bounds' sandwich widens at both levels. A floor fitted
 * to the outcomes says how often a solution with such a line is still right. Nothing here knows
 * arithmetic: ε is one number, read from the outcomes.
 */
import { logSigmoid } from "../twist/heads";
import type { LineVerifier } from "../twist/lineVerifier";
import { maximizeOnGrid } from "./calibration";
import type { SampleOutcomes } from "./samples";

/** The floors searched: beyond a half, a line that the verifier rates wrong would count as a coin toss. */
const MOST = 0.5;
/** A fitted floor below this is none: it changes no line's value by more than a thousandth. */
const LEAST = 0.001;
/** P(right) is kept this far from 0 and 1, so one confident sample cannot make the likelihood −∞. */
const CLAMP = 1e-6;

export interface KnownAnswerFloorFit {
  /** ε, or 0 where the outcomes ask for none. */
  floor: number;
  /** Mean log-likelihood of the samples' outcomes per sample, without the floor and with it. */
  before: number;
  after: number;
  /** Samples with a line the verifier reads (the others do not depend on ε). */
  samples: number;
}

/** The floor that makes the samples' outcomes likeliest under `verifier` (see the file's comment). */
export function fitKnownAnswerFloor(verifier: LineVerifier, outcomes: readonly SampleOutcomes[]): KnownAnswerFloorFit {
  const scored: { values: Float64Array; correct: boolean }[] = [];
  for (const { texts, correct } of outcomes)
    texts.forEach((text, i) => {
      const lines = verifier.encode(text);
      if (lines.length)
        scored.push({ values: Float64Array.from(lines, (l) => Math.exp(logSigmoid(verifier.lineLogit(l)))), correct: correct[i] });
    });
  const likelihood = (floor: number) => {
    if (!scored.length) return 0;
    let sum = 0;
    for (const { values, correct } of scored) {
      let logRight = 0;
      for (const v of values) logRight += Math.log(floor + (1 - floor) * v);
      const right = Math.min(Math.max(Math.exp(logRight), CLAMP), 1 - CLAMP);
      sum += correct ? Math.log(right) : Math.log1p(-right);
    }
    return sum / scored.length;
  };
  // A grid of hundredths, then a golden-section search between the best one's neighbours.
  const best = maximizeOnGrid(likelihood, 0, MOST, 0.01);
  const floor = best < LEAST ? 0 : best;
  return { floor, before: likelihood(0), after: likelihood(floor), samples: scored.length };
}
