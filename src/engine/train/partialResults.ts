/**
 * The line verifier's work after the epochs, on fresh plain samples of the run's first problems
 * (finishSamples): the verifier refitted on them in small steps (refitVerifier), given a memory of what
 * their right samples wrote (twist/resultMemory.ts), its per-operator base rates and memory weights set
 * from the outcomes of held-out problems' samples (calibration.ts) with its known-answer floor
 * (knownAnswerFloor.ts), and for the digit twist, the partial-result head (twist/partialResults.ts)
 * fitted to that verifier — on lines of the samples cut after each digit of their result it learns the
 * value the verifier gives the finished line (distilledCuts), starting from the verifier's own
 * parameters (fitPartialHead). Nothing here knows arithmetic; what the verifier knows it learned from
 * outcomes (lineLabels.ts).
 */
import { LoadedModel } from "../lm/model/loadModel";
import { MathProblem } from "../math/dataset";
import { Adam } from "../twist/adam";
import { arithmeticLines } from "../twist/arithmeticLines";
import { LineVerifier } from "../twist/lineVerifier";
import { logSigmoid } from "../twist/heads";
import { encodePartial, PartialResult, PartialResultHead } from "../twist/partialResults";
import { ResultLengthTable } from "../twist/resultLengths";
import { Rng } from "../util/rng";
import { calibrateVerifier } from "./calibration";
import { fitKnownAnswerFloor } from "./knownAnswerFloor";
import { finishedLineExamples } from "./lineContrasts";
import { mineLineLabels, mineResultMemory } from "./lineLabels";
import { plainSamplesFor, SampleOutcomes } from "./samples";

export interface CutLine extends PartialResult {
  /** The probability that it is right: 0 or 1 mined from outcomes, or a verifier's value (distilledCuts). */
  label: number;
  /** The example's weight in the loss. */
  weight: number;
}

export interface PartialTrainOptions {
  epochs: number;
  batch: number;
  learningRate: number;
  seed: number;
  onEpoch?: (epoch: number, loss: number) => void;
  /** Stops between minibatches (training then returns `stopped`, the head half-trained). */
  signal?: AbortSignal;
}

/** Minibatches between yields to the event loop: a stop signal is seen within about a second. */
const BATCHES_PER_YIELD = 16;

/**
 * Binary cross-entropy on the cut lines, by Adam over shuffled minibatches (deterministic given the
 * seed). It yields to the event loop as it goes, so that a signal can stop it.
 */
export async function trainPartialHead(
  head: PartialResultHead,
  cuts: readonly CutLine[],
  o: PartialTrainOptions,
): Promise<{ loss: number; stopped: boolean }> {
  const examples = cuts.flatMap((c) => {
    const enc = encodePartial(c, head.columns);
    return enc ? [{ enc, label: c.label, weight: c.weight }] : [];
  });
  if (!examples.length) throw new Error("partial-result head: no cut line fits the columns");
  const params = head.net.parameters();
  const adam = new Adam(params, o.learningRate);
  const rng = new Rng(`partial:${o.seed}`);
  const order = examples.map((_, i) => i);
  let loss = 0;
  let batches = 0;
  for (let epoch = 0; epoch < o.epochs; epoch++) {
    for (let i = order.length - 1; i > 0; i--) {
      const j = rng.int(0, i);
      [order[i], order[j]] = [order[j], order[i]];
    }
    loss = 0;
    let total = 0;
    for (let start = 0; start < order.length; start += o.batch) {
      if (++batches % BATCHES_PER_YIELD === 0) await new Promise((resolve) => setImmediate(resolve));
      if (o.signal?.aborted) return { loss, stopped: true };
      const grads = params.map((p) => new Float64Array(p.length));
      const batch = order.slice(start, start + o.batch);
      const mass = batch.reduce((s, i) => s + examples[i].weight, 0);
      for (const i of batch) {
        const { enc, label, weight } = examples[i];
        const z = head.net.lineLogit(enc);
        loss -= weight * (label * logSigmoid(z) + (1 - label) * logSigmoid(-z));
        head.net.addGradient(grads, enc, (weight * (Math.exp(logSigmoid(z)) - label)) / mass);
      }
      total += mass;
      adam.step(grads);
    }
    loss /= total;
    o.onEpoch?.(epoch + 1, loss);
  }
  return { loss, stopped: false };
}

/**
 * The cuts of every line the samples wrote (after each digit of its result but the last), each labelled
 * with the verifier's value φ of the finished line. A head trained on them estimates E[φ | the digits
 * written so far]: what the step level will say of the line, on average over how the model goes on. So
 * at the line end the two levels tell one story, and the weights a particle takes digit by digit average
 * out to the verifier's at the line end instead of swinging there (docs/token-twist.md, "Sixth step":
 * heads trained on 0/1 "right so far" labels were sharper than φ, and their conditional-SMC bound on
 * log Z went above 0).
 */
export function distilledCuts(texts: readonly string[], verifier: LineVerifier): CutLine[] {
  const out: CutLine[] = [];
  for (const text of texts)
    for (const line of arithmeticLines(text)) {
      const enc = verifier.encodeLine(line);
      if (!enc) continue;
      const phi = Math.exp(logSigmoid(verifier.lineLogit(enc)));
      for (let k = 1; k < line.c.length; k++)
        out.push({ line: { ...line, c: line.c.slice(0, k) }, length: line.c.length, label: phi, weight: 1 });
    }
  return out;
}

/**
 * Counts into `table` the result length of every line of the right samples' (outcome-mined labels,
 * lineLabels.ts): what right samples wrote, no arithmetic. Returns how many lines it counted.
 */
export function countResultLengths(table: ResultLengthTable, texts: readonly string[], correct: readonly boolean[]): number {
  let lines = 0;
  for (const { line, label } of mineLineLabels(texts, correct))
    if (label === 1) {
      table.add(line);
      lines++;
    }
  return lines;
}

/**
 * How a digit twist's head is fitted to its trained verifier after the epochs (fitPartialHead). Chosen
 * on samples of training problems (docs/token-twist.md, "Fifth step" and "Sixth step"): a head that
 * starts from the verifier it hands over to and is trained alone, in small steps, votes 82–84% at
 * K = 16 on the 500 test problems, against 81.0% for the head trained beside the verifier in the epochs
 * (from random values, or in 1 pass, 83 on the first 100 against 89).
 */
export const PARTIAL_HEAD_FIT = {
  /** Training problems sampled (the run's first ones, fewer when it has fewer). */
  problems: 1800,
  /** Plain samples of each. */
  samples: 8,
  epochs: 6,
  batch: 256,
  learningRate: 0.003,
};

/**
 * How the verifier is refitted on the same samples before the head is fitted to it (refitVerifier):
 * one pass in small steps from the epochs' verifier, on its own objective (mined labels and contrasts).
 * Chosen on 16 plain samples of 500 training problems no run reads (the train split's 4,500th to
 * 5,000th): one pass at 0.001 ranked better than the epochs' verifier (best of 16 by it 79.2% against
 * 76.6%) and lost least calibration (log-likelihood of the samples' outcomes −0.409 against −0.374);
 * six passes at 0.003 overfitted (−0.896, best of 16 77.8%). docs/token-twist.md, "Eighth step".
 */
export const VERIFIER_REFIT = { epochs: 1, batch: 256, learningRate: 0.001 };

/**
 * The finish's progress: sampling the problems, the verifier's refit, the head's passes (with the loss
 * after each), then SMC on held-out problems to choose the final power (finalPower.ts; the power once chosen).
 */
export type PartialFitProgress =
  | { part: "sampling"; done: number; total: number }
  | { part: "verifier" | "training"; done: number; total: number; loss: number }
  | { part: "power"; done: number; total: number; power?: number };

export interface PartialFitOptions {
  /** The run's seed: the samples' seeds and the minibatch order. */
  seed: number;
  maxTokens: number;
  /** The run's --contrast_weight: the refit's objective is the epochs' own. */
  contrastWeight: number;
  /** Problems after the run's, which none of its steps read: the verifier's base rates are set on them. */
  heldOut: readonly MathProblem[];
  signal?: AbortSignal;
  onProgress?: (p: PartialFitProgress) => void;
}

/**
 * How many problems after the run's `n` set the verifier's base rates (calibration.ts): problems no step
 * of the run read. On problems the epochs had read the shipped run's verifier rated right × and ÷ lines
 * higher than on new ones (the shifts fitted there: +1.2 for × and ÷; on new problems +2.0), as a test
 * problem is new. A quarter of the run's count at most, so a small run samples few more.
 */
export const CALIBRATION_PROBLEMS = { most: 600, share: 0.25 };

export function calibrationProblems(n: number): number {
  return Math.min(CALIBRATION_PROBLEMS.most, Math.floor(n * CALIBRATION_PROBLEMS.share));
}

/**
 * How many of the run's first problems the verifier's result memory (twist/resultMemory.ts) is mined
 * from: the fit's, and as many more as the run has up to this. On the shipped model's samples, a memory
 * of 4,000 problems' (and the 600 held out) met three in four of the test problems' × lines; on 500
 * validation problems the best of 16 plain samples by φ was right on 85.0% with it, 83.6% with 1,800
 * problems', 82.6% without a memory (docs/token-twist.md, "Tenth step"). Each problem beyond the fit's
 * costs 8 more plain samples (about 0.1 s on 2 cores).
 */
export const MEMORY_PROBLEMS = 4000;

/**
 * The finish's plain samples: of the run's first problems, which it fits on; of the next ones, up to
 * MEMORY_PROBLEMS, which only the result memory reads; and of the held-out ones it calibrates on.
 */
export interface FinishSamples {
  fit: SampleOutcomes[];
  memory: SampleOutcomes[];
  calibration: SampleOutcomes[];
}

/**
 * How many problems the finish samples for each part, for a run of `run` problems with `heldOut` found
 * after them: the first PARTIAL_HEAD_FIT.problems to fit on, the run's next ones up to MEMORY_PROBLEMS for
 * the memory alone, and calibrationProblems(run) of the held-out ones.
 */
export function finishPlan(run: number, heldOut: number): { fit: number; memory: number; calibration: number } {
  const fit = Math.min(run, PARTIAL_HEAD_FIT.problems);
  return { fit, memory: Math.max(0, Math.min(run, MEMORY_PROBLEMS) - fit), calibration: Math.min(heldOut, calibrationProblems(run)) };
}

/** Plain samples of the problems finishPlan names; undefined when the signal stopped it. */
export async function finishSamples(
  model: LoadedModel,
  problems: readonly MathProblem[],
  o: PartialFitOptions,
): Promise<FinishSamples | undefined> {
  const plan = finishPlan(problems.length, o.heldOut.length);
  const sampled = plan.fit + plan.memory;
  const chosen = [...problems.slice(0, sampled), ...o.heldOut.slice(0, plan.calibration)];
  const out: SampleOutcomes[] = [];
  for (const [i, problem] of chosen.entries()) {
    if (o.signal?.aborted) return undefined;
    // A run's problem is sampled by its place; a held-out one by its place after all the run's problems,
    // so each problem's samples depend on no other count.
    const index = i < sampled ? i : problems.length + i - sampled;
    const plain = await plainSamplesFor(
      model,
      problem,
      index,
      { samples: PARTIAL_HEAD_FIT.samples, maxTokens: o.maxTokens, seed: o.seed },
      "partial",
    );
    out.push({ texts: plain.texts, correct: plain.correct });
    o.onProgress?.({ part: "sampling", done: i + 1, total: chosen.length });
  }
  return { fit: out.slice(0, plan.fit), memory: out.slice(plan.fit, sampled), calibration: out.slice(sampled) };
}

/**
 * A copy of the verifier trained in small steps (VERIFIER_REFIT) on the lines mined from `samples` and
 * their contrasts. The epochs' large steps (a few problems' lines at a time, 0.01) leave it short of
 * what those lines can teach: one pass of minibatches of 256 lines over 1,800 problems' samples lifts
 * the weighted vote by 2–3 points at either level (docs/token-twist.md, "Eighth step"). The verifier
 * itself when the samples hold no line it reads; undefined when the signal stopped it.
 */
export async function refitVerifier(
  verifier: LineVerifier,
  samples: readonly SampleOutcomes[],
  o: PartialFitOptions,
): Promise<LineVerifier | undefined> {
  const lines = samples.flatMap((s) => finishedLineExamples(s.texts, s.correct, o.contrastWeight));
  const copy = PartialResultHead.fromVerifier(verifier);
  // A finished line is a partial result with every digit written: encodePartial reads it as encodeLine does.
  if (!lines.some((l) => encodePartial(l, copy.columns))) return verifier;
  const r = VERIFIER_REFIT;
  const { stopped } = await trainPartialHead(copy, lines, {
    epochs: r.epochs,
    batch: r.batch,
    learningRate: r.learningRate,
    seed: o.seed,
    signal: o.signal,
    onEpoch: (done, loss) => o.onProgress?.({ part: "verifier", done, total: r.epochs, loss }),
  });
  return stopped ? undefined : copy.net;
}

/**
 * The step level's finish: the epochs' verifier refitted and calibrated on fresh plain samples
 * (finishedVerifier), the same samples and the same verifier as the digit twist's finish makes, so one φ
 * ends every line at either level. Undefined when the signal stopped it.
 */
export async function finishVerifier(
  model: LoadedModel,
  verifier: LineVerifier,
  problems: readonly MathProblem[],
  o: PartialFitOptions,
): Promise<LineVerifier | undefined> {
  const samples = await finishSamples(model, problems, o);
  return samples && finishedVerifier(verifier, samples, o);
}

/**
 * The verifier both levels end their lines with: the epochs' refitted on the samples it fits on
 * (refitVerifier); then its per-operator base rates, and what agreeing with the results the run's
 * problems' right samples wrote is worth (mineResultMemory), set from the held-out problems' outcomes
 * (calibration.ts) — a memory of problems other than those, as a test problem is other; in use it
 * remembers the held-out problems' results too — and, from the same outcomes, its known-answer floor
 * (knownAnswerFloor.ts). Undefined when the signal stopped it.
 */
async function finishedVerifier(verifier: LineVerifier, samples: FinishSamples, o: PartialFitOptions): Promise<LineVerifier | undefined> {
  const refitted = await refitVerifier(verifier, samples.fit, o);
  if (!refitted) return undefined;
  const columns = refitted.p.columns;
  const met = mineResultMemory([...samples.fit, ...samples.memory], columns);
  const { verifier: calibrated, hit, miss } = calibrateVerifier(refitted, samples.calibration, met.size ? met : undefined);
  // The known answer's floor is read from the same held-out outcomes, through the same memory.
  const { floor } = fitKnownAnswerFloor(calibrated, samples.calibration);
  const finished = calibrated.withKnownAnswerFloor(floor);
  if (![...hit, ...miss].some((x) => x !== 0)) return finished.withMemory(undefined);
  const remembered = mineResultMemory([...samples.fit, ...samples.memory, ...samples.calibration], columns);
  return finished.withMemory(remembered.withWeights(hit, miss));
}

/**
 * The digit twist's finish: the verifier refitted and calibrated (finishedVerifier), then a
 * partial-result head and result lengths fitted to it: the head starts as a copy of that verifier (a written digit first
 * read as the verifier reads a finished one) and learns the distilled cuts of the same plain samples;
 * the lengths are counted from their right lines. It depends only on the epochs' verifier, the problems,
 * the seed, the contrast weight and the model, so a run resumed after its epochs repeats it exactly.
 * Undefined when the signal stopped it; without `head` when the samples hold no line the head reads.
 */
export async function fitPartialHead(
  model: LoadedModel,
  verifier: LineVerifier,
  problems: readonly MathProblem[],
  o: PartialFitOptions,
): Promise<{ verifier: LineVerifier; head?: { partial: PartialResultHead; lengths: ResultLengthTable; loss: number } } | undefined> {
  const f = PARTIAL_HEAD_FIT;
  const samples = await finishSamples(model, problems, o);
  if (!samples) return undefined;
  const finished = await finishedVerifier(verifier, samples, o);
  if (!finished) return undefined;
  const cuts: CutLine[] = [];
  const lengths = new ResultLengthTable();
  for (const { texts, correct } of samples.fit) {
    countResultLengths(lengths, texts, correct);
    cuts.push(...distilledCuts(texts, finished));
  }
  const partial = PartialResultHead.fromVerifier(finished);
  if (!cuts.some((c) => encodePartial(c, partial.columns))) return { verifier: finished };
  const { loss, stopped } = await trainPartialHead(partial, cuts, {
    epochs: f.epochs,
    batch: f.batch,
    learningRate: f.learningRate,
    seed: o.seed,
    signal: o.signal,
    onEpoch: (done, loss) => o.onProgress?.({ part: "training", done, total: f.epochs, loss }),
  });
  return stopped ? undefined : { verifier: finished, head: { partial, lengths, loss } };
}
