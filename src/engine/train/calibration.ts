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
 * Only the base rates move, one number per operator: how the verifier's columns rank lines of one
 * operator is left as the outcomes taught it. Given a memory of results right samples of other problems
 * wrote (twist/resultMemory.ts), what a result column agreeing or disagreeing with it is worth is fitted
 * the same way, two numbers per operator: the columns cannot read × and ÷, the memory can where it has met
 * the expression. Nothing here knows arithmetic.
 */
import { LineVerifier } from "../twist/lineVerifier";
import { OPERATORS } from "../twist/arithmeticLines";
import type { ResultMemory } from "../twist/resultMemory";
import { logSigmoid } from "../twist/heads";
import type { SampleOutcomes } from "./samples";

/** The shifts searched, in logits: beyond ±6 a base rate is 0 or 1 to within 0.25%. */
const SHIFT_RANGE = 6;
/**
 * Coordinate ascent stops when a sweep gains less than this in mean log-likelihood, or after MAX_SWEEPS:
 * the shifts alone settle in two or three sweeps, but an operator's shift and its memory weights move
 * the same lines and take more.
 */
const CONVERGED = 1e-7;
const MAX_SWEEPS = 100;
/** φ is kept this far from 0 and 1, so one confident wrong sample cannot make the likelihood −∞. */
const PHI_FLOOR = 1e-6;

/** One sample as calibration reads it: its readable lines' logits, operators and agreement with a memory, and its outcome. */
interface ScoredSample {
  logits: Float64Array;
  ops: Int32Array;
  /** Per line: result columns that agree / disagree with the memory's result (0 where not remembered). */
  hits: Int32Array;
  misses: Int32Array;
  correct: boolean;
}

/** ℓ's change per line: b_op, and with a memory hit_op·agreeing + miss_op·disagreeing columns. */
interface Weights {
  shift: number[];
  hit: number[];
  miss: number[];
}

/**
 * The memory weights' prior: normal with this standard deviation in logits, so that an operator whose
 * remembered lines the outcomes say little about keeps weights near 0 instead of wherever a flat
 * likelihood leaves them (on 600 problems' samples + lines were remembered too rarely to say anything).
 */
const MEMORY_PRIOR_SD = 3;

export interface Calibration {
  /**
   * The verifier with its shifts added to its operators' biases and, when a memory was given, reading it
   * with the fitted weights (a copy; the input is left alone).
   */
  verifier: LineVerifier;
  /** b_op in OPERATORS order (+ − × ÷). */
  shifts: number[];
  /** The memory's weights per operator (0 without a memory, and for operators none of its lines has). */
  hit: number[];
  miss: number[];
  /** Mean log-likelihood of the samples' outcomes per sample, before and after. */
  before: number;
  after: number;
  /** Samples with a line the verifier reads (the others do not depend on the shifts). */
  samples: number;
}

/**
 * The verifier's per-operator base rates, and with `memory` (resultMemory.ts) how much agreeing with it
 * is worth per operator, fitted to the samples' outcomes (see the file's comment). `memory` must not hold
 * the samples' own results: its weights are meant for problems it has not met.
 */
export function calibrateVerifier(verifier: LineVerifier, outcomes: readonly SampleOutcomes[], memory?: ResultMemory): Calibration {
  const scored: ScoredSample[] = [];
  for (const { texts, correct } of outcomes)
    texts.forEach((text, i) => {
      const lines = verifier.encode(text);
      if (!lines.length) return;
      const agreement = lines.map((l) => memory?.agreement(l));
      scored.push({
        logits: Float64Array.from(lines, (l) => verifier.lineLogit(l)),
        ops: Int32Array.from(lines, (l) => l[0]),
        hits: Int32Array.from(agreement, (a) => a?.hits ?? 0),
        misses: Int32Array.from(agreement, (a) => a?.misses ?? 0),
        correct: correct[i],
      });
    });
  const zeros = () => new Array<number>(OPERATORS.length).fill(0);
  const w: Weights = { shift: zeros(), hit: zeros(), miss: zeros() };
  const before = meanLogLikelihood(scored, w);
  // The coordinates the samples say something about: an operator's shift where it has lines, its memory
  // weights where its lines have agreeing / disagreeing columns.
  const coordinates: { part: keyof Weights; op: number }[] = [];
  for (let op = 0; op < OPERATORS.length; op++) {
    const of = (count: (s: ScoredSample, i: number) => number) => scored.some((s) => s.ops.some((o, i) => o === op && count(s, i) > 0));
    if (of(() => 1)) coordinates.push({ part: "shift", op });
    if (of((s, i) => s.hits[i])) coordinates.push({ part: "hit", op });
    if (of((s, i) => s.misses[i])) coordinates.push({ part: "miss", op });
  }
  const penalty = (x: number) => (x * x) / (2 * MEMORY_PRIOR_SD ** 2 * scored.length);
  const objective = (t: Weights) => meanLogLikelihood(scored, t) - [...t.hit, ...t.miss].reduce((sum, x) => sum + penalty(x), 0);
  for (let sweep = 0, last = objective(w); sweep < MAX_SWEEPS; sweep++) {
    for (const { part, op } of coordinates)
      w[part][op] = bestShift((x) => objective({ ...w, [part]: w[part].map((v, k) => (k === op ? x : v)) }));
    const now = objective(w);
    if (now - last < CONVERGED) break;
    last = now;
  }
  const after = meanLogLikelihood(scored, w);
  const copy = verifier.copy();
  w.shift.forEach((b, op) => (copy.p.bias[op] += b));
  return {
    verifier: memory ? copy.withMemory(memory.withWeights(w.hit, w.miss)) : copy,
    shifts: w.shift,
    hit: w.hit,
    miss: w.miss,
    before,
    after,
    samples: scored.length,
  };
}

/** Mean over the samples of log P(outcome) under φ = Π σ(ℓ + b_op + hit_op·agreeing + miss_op·disagreeing). */
function meanLogLikelihood(samples: readonly ScoredSample[], w: Weights): number {
  if (!samples.length) return 0;
  let sum = 0;
  for (const { logits, ops, hits, misses, correct } of samples) {
    let logPhi = 0;
    for (let i = 0; i < logits.length; i++) {
      const op = ops[i];
      logPhi += logSigmoid(logits[i] + w.shift[op] + w.hit[op] * hits[i] + w.miss[op] * misses[i]);
    }
    const phi = Math.min(Math.max(Math.exp(logPhi), PHI_FLOOR), 1 - PHI_FLOOR);
    sum += correct ? Math.log(phi) : Math.log1p(-phi);
  }
  return sum / samples.length;
}

/** The shift in [−SHIFT_RANGE, SHIFT_RANGE] that maximises f, searched from a grid of quarter logits. */
const bestShift = (f: (b: number) => number): number => maximizeOnGrid(f, -SHIFT_RANGE, SHIFT_RANGE, 0.25);

/**
 * The x in [lo, hi] that maximises f: the best of a grid of `step`s from lo, then a golden-section search
 * between that point's neighbours (deterministic; f need not be concave across the whole range).
 */
export function maximizeOnGrid(f: (x: number) => number, lo: number, hi: number, step: number): number {
  // Where f is nowhere finite: 0 (no shift, no floor) if the range holds it.
  let best = Math.min(Math.max(0, lo), hi),
    bestValue = -Infinity;
  for (let x = lo; x <= hi + 1e-9; x += step) {
    const v = f(x);
    if (v > bestValue) [best, bestValue] = [x, v];
  }
  const ratio = (Math.sqrt(5) - 1) / 2;
  let left = Math.max(best - step, lo),
    right = Math.min(best + step, hi);
  let x1 = right - ratio * (right - left),
    x2 = left + ratio * (right - left);
  let f1 = f(x1),
    f2 = f(x2);
  for (let i = 0; i < 30; i++) {
    if (f1 >= f2) {
      right = x2;
      [x2, f2] = [x1, f1];
      x1 = right - ratio * (right - left);
      f1 = f(x1);
    } else {
      left = x1;
      [x1, f1] = [x2, f2];
      x2 = left + ratio * (right - left);
      f2 = f(x2);
    }
  }
  const mid = (left + right) / 2;
  return f(mid) >= bestValue ? mid : best;
}
