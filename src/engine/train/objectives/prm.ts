/**
 * PRM, the line verifier (a process reward model), at step level: σ(ℓ) of every arithmetic line of the
 * plain samples whose label follows from the outcomes (lineLabels.ts) predicts that label, by binary
 * cross-entropy; with `--contrast_weight`, each mined result's one-digit changes are wrong lines too
 * (lineContrasts.ts), so the verifier learns every column, not only where the model slips. It reads only
 * the text, so it needs no teacher forcing and no SMC sweep.
 *
 * After the epochs (finish) the verifier is refitted in small steps on fresh plain samples of the run's
 * first problems (refitVerifier, train/partialResults.ts), given a memory of what right samples of the
 * run's problems wrote (twist/resultMemory.ts), and its base rate per operator and the memory's weights
 * set on plain samples of problems after the run's, which no step of it read (calibration.ts). Last,
 * twisted SMC with the finished twist on those held-out problems chooses the power γ its solutions end
 * on, φ^γ, by how well calibrated the posterior over answers is (finalPower.ts).
 *
 * With `--twist token` it trains the digit twist (twist/digitTwistHead.ts): the same verifier — bit for
 * bit the step level's with the same flags, refit included, so one φ ends every line at either level —
 * and after the refit the partial-result head and the result lengths, fitted to the refitted verifier on
 * the same samples (fitPartialHead). A head trained beside the verifier in the epochs, from random
 * values, steered worse (docs/token-twist.md, "Fifth step"), so the epochs leave the head as it started.
 */
import type { LoadedModel } from "../../lm/model/loadModel";
import { DigitTwistHead } from "../../twist/digitTwistHead";
import { logSigmoid } from "../../twist/heads";
import { LineVerifier, VERIFIER_EMBEDDING, VERIFIER_HIDDEN } from "../../twist/lineVerifier";
import { PartialResultHead } from "../../twist/partialResults";
import { ResultLengthTable } from "../../twist/resultLengths";
import { Rng } from "../../util/rng";
import { chooseRunFinalPower } from "../finalPower";
import { finishedLineExamples } from "../lineContrasts";
import { calibrationProblems, CutLine, finishVerifier, fitPartialHead } from "../partialResults";
import { CollectOptions, plainSamples, ProblemData, SampleOutcomes } from "../samples";
import { FinishOptions, ObjectiveResult, TwistObjective } from "./objective";

/** Digit columns the line verifier reads: numbers up to 9,999 (a line with a longer one is not read). */
export const VERIFIER_COLUMNS = 4;
/**
 * Digits a column reads from the column below: with the result's (3), whether a carry or borrow came in
 * is settled; without it (2, the verifiers before 2026-12-06) it is guessed from the operands' digits.
 * Trained alike on dumped samples, it ranked a result's right digit first 74% of the time against 65%
 * (79% against 72% with replay): docs/token-twist.md, "Fourth step".
 */
export const VERIFIER_BELOW = 3;

export type PrmData = ProblemData<{
  /** Finished lines: those labelled by the outcomes (weight 1) and the mined results' contrasts. */
  lines: CutLine[];
  /** The samples these were mined from, for replay. */
  samples: SampleOutcomes;
}>;

export const prm: TwistObjective<LineVerifier | DigitTwistHead, PrmData> = {
  name: "prm",
  description:
    "line verifier (process reward model), binary cross-entropy on line labels mined from outcomes and their contrasts; at token level with a partial-result head and result lengths (the digit twist)",
  levels: ["step", "token"],
  learningRate: 0.01,
  initHead: (o) => {
    const below = o.verifierBelow ?? VERIFIER_BELOW;
    const verifier = LineVerifier.init(VERIFIER_COLUMNS, new Rng(`head:${o.seed}`), VERIFIER_EMBEDDING, VERIFIER_HIDDEN, below);
    if (o.level === "step") return verifier;
    const partial = new PartialResultHead(
      LineVerifier.init(VERIFIER_COLUMNS, new Rng(`partial-head:${o.seed}`), VERIFIER_EMBEDDING, VERIFIER_HIDDEN, below),
    );
    return new DigitTwistHead(verifier, partial, new ResultLengthTable());
  },
  async collect(model, problem, o) {
    const plain = await plainSamples(model, problem, o);
    return { ...mine({ texts: plain.texts, correct: plain.correct }, o), stats: plainStats(plain.correct) };
  },
  gradient: prmGradient,
  heldOut: calibrationProblems,
  async finish(model, head, problems, o) {
    if (!(head instanceof DigitTwistHead)) {
      const verifier = await finishVerifier(model, head, problems, o);
      return verifier && endingOnChosenPower(model, verifier, o);
    }
    const fitted = await fitPartialHead(model, head.verifier, problems, o);
    if (!fitted) return undefined;
    // Without lines to fit a head on, the head and lengths of the epochs (which saw none either) stay.
    const { partial, lengths } = fitted.head ?? head;
    return endingOnChosenPower(model, new DigitTwistHead(fitted.verifier, partial, lengths), o);
  },
  // Plain samples do not depend on the head: an earlier problem's are as good as fresh ones.
  replay: {
    keep: (d) => d.samples,
    restore: (kept, o) => ({ ...mine(kept, o), stats: plainStats(kept.correct) }),
  },
};

/**
 * The finished twist, its solutions ending on the power chosen for it by SMC at its level on the held-out
 * problems (finalPower.ts). Undefined when the signal stopped it.
 */
async function endingOnChosenPower<H extends LineVerifier | DigitTwistHead>(
  model: LoadedModel,
  head: H,
  o: FinishOptions,
): Promise<H | undefined> {
  const token = head instanceof DigitTwistHead;
  const verifier = token ? head.verifier : (head as LineVerifier);
  const chosen = await chooseRunFinalPower(model, token ? head.twist(model.lm.vocabSize) : verifier, token ? "token" : "step", verifier, {
    ...o,
    onProgress: (done, total) => o.onProgress?.({ part: "power", done, total }),
  });
  if (!chosen) return undefined;
  // With no held-out problem the start line has said that solutions end on φ as fitted.
  if (chosen.problems) o.onProgress?.({ part: "power", done: chosen.problems, total: chosen.problems, power: chosen.power });
  const ending = verifier.withFinalPower(chosen.power);
  return (token ? new DigitTwistHead(ending, head.partial, head.lengths) : ending) as H;
}

/** One problem's samples mined into the verifier's lines. */
function mine(samples: SampleOutcomes, o: Pick<CollectOptions, "contrastWeight">): Omit<PrmData, "stats"> {
  const { texts, correct } = samples;
  return { lines: finishedLineExamples(texts, correct, o.contrastWeight ?? 0), samples };
}

/** Plain sampling's statistics (ψ ≡ 1: ESS = 1, Ẑ = mean reward). */
function plainStats(correct: readonly boolean[]): PrmData["stats"] {
  const exactPositives = correct.filter(Boolean).length;
  const accuracy = exactPositives / correct.length;
  return { reward: accuracy, sampleAccuracy: accuracy, exactPositives, ess: 1, logZ: Math.log(accuracy) };
}

/**
 * The verifier's weighted binary cross-entropy on the finished lines; for the digit twist, whose head is
 * fitted after the epochs, a zero gradient for the head beside it (the optimiser's parameters are both
 * networks', as checkpoints keep them).
 */
export function prmGradient(head: LineVerifier | DigitTwistHead, data: readonly PrmData[]): ObjectiveResult {
  const verifier = head instanceof DigitTwistHead ? head.verifier : head;
  // A line with a number longer than the columns is left out, as the verifier leaves it out when it
  // scores: cut to its low digits it would be another line, under this line's label.
  const lines = weightedBce(
    verifier,
    data.flatMap((d) => d.lines),
    (l) => verifier.encodeLine(l.line),
  );
  if (!(head instanceof DigitTwistHead)) return lines;
  return { grads: [...lines.grads, ...head.partial.net.parameters().map((p) => new Float64Array(p.length))], loss: lines.loss };
}

/** Σ w·BCE / Σ w over the examples a network reads (with every weight 1: the mean over them). */
function weightedBce(net: LineVerifier, examples: readonly CutLine[], encode: (e: CutLine) => Int32Array | undefined): ObjectiveResult {
  const grads = net.parameters().map((p) => new Float64Array(p.length));
  let loss = 0;
  let mass = 0;
  // The parameters do not change within one gradient: a memo of column terms serves every line.
  const memo = new Map<number, number>();
  const lines: Int32Array[] = [];
  const coefficients: number[] = [];
  for (const e of examples) {
    const enc = encode(e);
    if (!enc) continue;
    const z = net.lineLogit(enc, memo);
    loss -= e.weight * (e.label * logSigmoid(z) + (1 - e.label) * logSigmoid(-z));
    lines.push(enc);
    coefficients.push(e.weight * (Math.exp(logSigmoid(z)) - e.label));
    mass += e.weight;
  }
  net.addGradients(grads, lines, coefficients);
  const n = Math.max(mass, 1e-12);
  for (const g of grads) for (let i = 0; i < g.length; i++) g[i] /= n;
  return { grads, loss: mass ? loss / n : 0 };
}
