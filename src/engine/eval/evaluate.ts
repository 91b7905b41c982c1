/**
 * The evaluation table: every method at the same particle/sample budget N on the same problems, with
 * accuracy ± standard error and wall time, plus the log Ẑ bounds of Zhao et al. (2024, Sec. 5).
 */
import { LoadedModel } from "../lm/model/loadModel";
import { encodeWithinContext } from "../lm/model/contextWindow";
import { generate } from "../lm/generate";
import { answersMatch, reward } from "../math/answer";
import { MathProblem } from "../math/dataset";
import { answerPosterior } from "../smc/posterior";
import { CONFIDENCE_FEATURES, ConfidenceTracker, StepTwist, TokenTwist } from "../smc/twist";
import { runTwistedSmc, SmcLevel, SmcOptions } from "../smc/twistedSmc";
import { normalize } from "../smc/weights";
import { logSigmoid, ValueTwistHead } from "../twist/heads";
import { knownAnswerTwist, lineVerifierOf, unknownAnswerPotential } from "../twist/finalPotential";

export interface EvalOptions {
  particles: number;
  maxTokens: number;
  seed: number;
  tokenTwist?: TokenTwist;
  stepTwist?: StepTwist;
  /** Also estimate the log Ẑ bounds (two more SMC runs per problem and level with a twist). */
  bounds: boolean;
  onProblem?: (done: number, total: number) => void;
}

export interface EvalRow {
  method: string;
  accuracy: number;
  stderr: number;
  /** Wall time of this method over all problems. */
  seconds: number;
  note?: string;
}

export interface EvalReport {
  n: number;
  particles: number;
  rows: EvalRow[];
  bounds?: BoundsReport;
}

/** A mean over problems and its standard error. */
export interface MeanStderr {
  mean: number;
  stderr: number;
}

/** One level's log Ẑ bounds, over the report's shared problems. */
export interface LevelBounds {
  level: SmcLevel;
  lower: MeanStderr;
  upper: MeanStderr;
  /** Problems with an exact sample where this level's SMC found no correct particle (Ẑ = 0, log Ẑ = −∞). */
  zeros: number;
}

/**
 * The log Ẑ bounds of Zhao et al. (2024, Sec. 5) for each level with a twist, all over the same problems:
 * those with an exact correct sample (for conditional SMC) where every level's SMC found Ẑ > 0, so that
 * a level that finds the right answer on harder problems is not measured on harder problems.
 */
export interface BoundsReport {
  /** The problems every mean is over. */
  problems: number;
  /** Problems with an exact correct sample. */
  withSample: number;
  levels: LevelBounds[];
  /** With both levels: token minus step, per problem (a positive lower and a negative upper are tighter at token level). */
  tokenMinusStep?: { lower: MeanStderr; upper: MeanStderr };
  note: string;
}

export class Tally {
  sum = 0;
  sumSq = 0;
  n = 0;
  ms = 0;
  add(x: number): void {
    this.sum += x;
    this.sumSq += x * x;
    this.n++;
  }
  row(method: string, note?: string): EvalRow {
    const mean = this.n ? this.sum / this.n : 0;
    const variance = this.n > 1 ? (this.sumSq / this.n - mean * mean) * (this.n / (this.n - 1)) : 0;
    return {
      method,
      accuracy: mean,
      stderr: Math.sqrt(Math.max(variance, 0) / Math.max(this.n, 1)),
      seconds: Math.round(this.ms / 100) / 10,
      note,
    };
  }
}

/**
 * The rows' names, shared by the local and the server table (evaluateRemote.ts) so that the two
 * backends' tables line up row for row.
 */
export const ROW = {
  greedy: "greedy",
  single: "single sample",
  majority: (n: number) => `majority vote@${n}`,
  bestOfN: (n: number) => `best-of-${n} by the step twist's final value`,
  smcPlain: "SMC without twist (posterior sample)",
  tokenSample: "twisted SMC, token level (posterior sample)",
  stepSample: "twisted SMC, step level (posterior sample)",
  tokenVote: "weighted vote over token-level twisted-SMC particles",
  stepVote: "weighted vote over step-level twisted-SMC particles",
  pass: (n: number) => `oracle pass@${n}`,
} as const;

export const twistNote = (x: unknown) => (x ? undefined : "no twist given");

/** Whether a text's final answer is the gold one (the reward, as a boolean). */
export const correct = (text: string, gold: number) => reward(text, gold) === 1;

export async function timed<T>(tally: Tally, f: () => Promise<T>): Promise<T> {
  const t0 = performance.now();
  try {
    return await f();
  } finally {
    tally.ms += performance.now() - t0;
  }
}

/** N plain samples of one problem: single-sample accuracy, pass@N and the majority vote. Returns which were right. */
export function scoreSamples(texts: string[], gold: number, t: { single: Tally; pass: Tally; majority: Tally }): boolean[] {
  const ok = texts.map((x) => correct(x, gold));
  t.single.add(ok.filter(Boolean).length / texts.length);
  t.pass.add(+ok.some(Boolean));
  const vote = answerPosterior(
    texts,
    texts.map(() => 0),
  );
  t.majority.add(+(vote.answer !== null && answersMatch(Number(vote.answer), gold)));
  return ok;
}

/**
 * One SMC run's particles: the posterior sample's accuracy (the right particles' normalised weight;
 * uniform when every weight died) and, given a tally for it, the weighted vote's.
 */
export function scoreParticles(texts: string[], logWeights: number[], gold: number, sampleTally: Tally, voteTally?: Tally): void {
  const w = normalize(logWeights);
  const dead = logWeights.every((x) => x === -Infinity);
  sampleTally.add(texts.reduce((a, x, j) => a + (dead ? 1 / texts.length : w[j]) * +correct(x, gold), 0));
  if (!voteTally) return;
  voteTally.ms = sampleTally.ms;
  const v = answerPosterior(texts, logWeights);
  voteTally.add(+(v.answer !== null && answersMatch(Number(v.answer), gold)));
}

/** The value head's estimate log ψ of each complete sample (its final hidden state and confidence). */
async function finalValues(model: LoadedModel, prompt: number[], samples: number[][], head: ValueTwistHead): Promise<number[]> {
  const V = model.lm.vocabSize,
    H = model.lm.hiddenSize;
  const out: number[] = [];
  for (const seq of samples) {
    if (!seq.length) {
      out.push(-Infinity);
      continue;
    }
    const { logits, hidden } = await model.lm.encodeAll!([...prompt, ...seq]);
    const tracker = new ConfidenceTracker();
    seq.forEach((tok, j) => {
      const row = prompt.length - 1 + j;
      let max = -Infinity;
      for (let s = 0; s < V; s++) max = Math.max(max, logits[row * V + s]);
      tracker.add(max - logits[row * V + tok]);
    });
    const conf = new Float32Array(CONFIDENCE_FEATURES);
    tracker.write(conf, 0);
    const last = prompt.length + seq.length - 1;
    out.push(logSigmoid(head.logits(hidden!.subarray(last * H, (last + 1) * H), 1, conf)[0]));
  }
  return out;
}

/** The SMC every row of an evaluation runs (npm run bench times the same): systematic, adaptive at ESS < K/2, T = 1. */
export function evalSmcOptions(particles: number, level: SmcLevel, maxTokens: number, seed: number, text: SmcOptions["text"]): SmcOptions {
  return { particles, level, resampling: "systematic", essThreshold: 0.5, resample: "adaptive", maxTokens, temperature: 1, seed, text };
}

export async function evaluate(model: LoadedModel, problems: MathProblem[], o: EvalOptions): Promise<EvalReport> {
  const { tokenizer, lm } = model;
  const N = o.particles;
  const t = {
    greedy: new Tally(),
    single: new Tally(),
    majority: new Tally(),
    bestOfN: new Tally(),
    smcPlain: new Tally(),
    tokenSample: new Tally(),
    tokenVote: new Tally(),
    stepSample: new Tally(),
    stepVote: new Tally(),
    pass: new Tally(),
  };
  // Per problem with an exact correct sample: each bound level's SMC and conditional-SMC log Ẑ.
  const boundRuns: { lower: number[]; upper: number[] }[] = [];
  let lowerZeroAll = 0;
  const isEos = (x: number) => tokenizer.isEos(x);
  // The generation budget of the problem at hand: capped when its prompt leaves less of the context.
  let maxTokens = o.maxTokens;
  const base = (level: SmcLevel, seed: number): SmcOptions => evalSmcOptions(N, level, maxTokens, seed, tokenizer);
  // The bounds at each level with a twist (token first), or at token level without one when there is none.
  // Their final potential is the known answer, so each twist is read as it is for one (finalPotential.ts):
  // floored here, reading each problem's answer below.
  const boundLevels: { level: SmcLevel; twist?: TokenTwist | StepTwist }[] = [
    ...(o.tokenTwist ? [{ level: "token" as const, twist: knownAnswerTwist(o.tokenTwist) }] : []),
    ...(o.stepTwist ? [{ level: "step" as const, twist: knownAnswerTwist(o.stepTwist) }] : []),
  ];
  if (!boundLevels.length) boundLevels.push({ level: "token" });
  for (const [i, p] of problems.entries()) {
    const fitted = encodeWithinContext(model, p.question, o.maxTokens);
    const prompt = fitted.prompt;
    maxTokens = fitted.maxTokens;
    const seed = o.seed * 1000003 + i;

    const g = await timed(t.greedy, () => generate(lm, prompt, { numSamples: 1, maxTokens, temperature: 0, seed, isEos }));
    t.greedy.add(+correct(tokenizer.decode(g.sequences[0].tokens), p.gold));

    const samples = await timed(t.majority, () => generate(lm, prompt, { numSamples: N, maxTokens, temperature: 1, seed, isEos }));
    t.single.ms = t.majority.ms / N;
    const texts = samples.sequences.map((s) => tokenizer.decode(s.tokens));
    const ok = scoreSamples(texts, p.gold, t);

    if (o.stepTwist) {
      const twist = o.stepTwist;
      const seqs = samples.sequences.map((s) => s.tokens);
      // Its time is the scoring alone: the N samples are the majority vote's. The value head reads
      // hidden states (teacher forcing); a twist that reads text scores the texts directly.
      const values = await timed(t.bestOfN, async () =>
        twist instanceof ValueTwistHead
          ? finalValues(model, prompt, seqs, twist)
          : Array.from(twist.logValue({ hiddenSize: lm.hiddenSize, prefixes: seqs, decode: (x) => tokenizer.decode(x) })),
      );
      let best = 0;
      values.forEach((v, j) => (v > values[best] ? (best = j) : undefined));
      t.bestOfN.add(+ok[best]);
    }

    const runAndScore = async (sampleTally: Tally, voteTally: Tally | undefined, opts: SmcOptions) => {
      const r = await timed(sampleTally, () => runTwistedSmc(lm, prompt, opts));
      scoreParticles(
        r.particles.map((q) => tokenizer.decode(q.tokens)),
        r.particles.map((q) => q.logWeight),
        p.gold,
        sampleTally,
        voteTally,
      );
    };
    await runAndScore(t.smcPlain, undefined, base("token", seed));
    // The answer is unknown to the solver: each level ends on its twist's final potential, as solve does.
    const unknown = (twist: TokenTwist | StepTwist) => ({ twist, logFinalPotential: unknownAnswerPotential(twist) });
    if (o.tokenTwist) await runAndScore(t.tokenSample, t.tokenVote, { ...base("token", seed), ...unknown(o.tokenTwist) });
    if (o.stepTwist) await runAndScore(t.stepSample, t.stepVote, { ...base("step", seed), ...unknown(o.stepTwist) });

    if (o.bounds) {
      const phi = (x: string) => (correct(x, p.gold) ? 0 : -Infinity);
      const exact = samples.sequences.find((_, j) => ok[j]);
      const run: { lower: number[]; upper: number[] } = { lower: [], upper: [] };
      for (const { level, twist } of boundLevels) {
        const known = { twist: knownAnswerTwist(twist, p.gold), logFinalPotential: phi };
        const lo = await runTwistedSmc(lm, prompt, { ...base(level, seed + 7), ...known });
        if (lo.logZ === -Infinity) lowerZeroAll++;
        run.lower.push(lo.logZ);
        if (!exact) continue;
        const hi = await runTwistedSmc(lm, prompt, { ...base(level, seed + 9), ...known, clamp: exact.tokens });
        run.upper.push(hi.logZ);
      }
      if (exact) boundRuns.push(run);
    }
    o.onProblem?.(i + 1, problems.length);
  }

  const rows: EvalRow[] = [
    t.greedy.row(ROW.greedy, "one decode, T = 0"),
    t.single.row(ROW.single, "T = 1, mean over the N samples"),
    t.majority.row(ROW.majority(N)),
    t.bestOfN.row(ROW.bestOfN(N), twistNote(o.stepTwist)),
    t.smcPlain.row(ROW.smcPlain, "ψ ≡ 1, φ ≡ 1: equals sampling"),
    t.tokenSample.row(ROW.tokenSample, twistNote(o.tokenTwist)),
    t.stepSample.row(ROW.stepSample, twistNote(o.stepTwist)),
    t.tokenVote.row(ROW.tokenVote, twistNote(o.tokenTwist)),
    t.stepVote.row(ROW.stepVote, twistNote(o.stepTwist)),
    t.pass.row(ROW.pass(N), "any of the N samples correct: a perfect verifier's ceiling"),
  ];
  const report: EvalReport = { n: problems.length, particles: N, rows };
  if (o.bounds)
    report.bounds = summarizeBounds(
      boundLevels.map((b) => b.level),
      boundRuns,
      lowerZeroAll,
      problems.length,
      twistNames(o),
    );
  return report;
}

const meanStderr = (xs: number[]): MeanStderr => {
  const mean = xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : Number.NaN;
  const variance = xs.reduce((a, b) => a + (b - mean) ** 2, 0) / Math.max(xs.length - 1, 1);
  return { mean, stderr: Math.sqrt(variance / Math.max(xs.length, 1)) };
};

function twistNames(o: EvalOptions): string {
  const named = [o.tokenTwist && "token", o.stepTwist && "step"].filter(Boolean);
  if (!named.length) return "no twist";
  // How knownAnswerTwist reads a line verifier or digit twist for the bounds (finalPotential.ts).
  const verifiers = [o.tokenTwist, o.stepTwist].map(lineVerifierOf).filter((v) => v !== undefined);
  const floors = [...new Set(verifiers.map((v) => v.p.knownAnswerFloor).filter((f) => f !== undefined))];
  const floor = floors.length ? `each line worth ε + (1 − ε)·σ(ℓ), ε = ${floors.join(" / ")}; ` : "";
  const read = verifiers.length
    ? ` (read for the known answer: ${floor}ψ = 1 once a result equal to the answer is written; a result being written is read against the answer's digits, and otherwise at its line's end)`
    : "";
  return `the ${named.join("- and ")}-level twist${named.length > 1 ? "s" : ""}${read}`;
}

/**
 * Each level's mean bounds over the problems where every level's SMC found a correct particle. Runs with
 * Ẑ = 0 (log Ẑ = −∞) cannot enter a mean; leaving them out level by level would measure each level on
 * the problems it solved, flattering the level that solves fewer.
 */
export function summarizeBounds(
  levels: SmcLevel[],
  runs: { lower: number[]; upper: number[] }[],
  lowerZeroAll: number,
  total: number,
  twists: string,
): BoundsReport {
  const shared = runs.filter((r) => r.lower.every(Number.isFinite));
  const report: BoundsReport = {
    problems: shared.length,
    withSample: runs.length,
    levels: levels.map((level, l) => ({
      level,
      lower: meanStderr(shared.map((r) => r.lower[l])),
      upper: meanStderr(shared.map((r) => r.upper[l])),
      zeros: runs.filter((r) => r.lower[l] === -Infinity).length,
    })),
    note:
      `log Ẑ of P(correct | problem) with ${twists}, over the ${shared.length} of the ${runs.length} problems with a correct ` +
      `sample where every level's SMC found a correct particle: SMC (a lower bound in expectation) and conditional SMC seeded ` +
      `with that exact sample (an upper bound); SMC found Ẑ = 0 in ${lowerZeroAll} runs on all ${total} problems`,
  };
  const token = levels.indexOf("token"),
    step = levels.indexOf("step");
  if (token >= 0 && step >= 0)
    report.tokenMinusStep = {
      lower: meanStderr(shared.map((r) => r.lower[token] - r.lower[step])),
      upper: meanStderr(shared.map((r) => r.upper[token] - r.upper[step])),
    };
  return report;
}
