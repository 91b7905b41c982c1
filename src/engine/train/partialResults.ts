/**
 * Trains the partial-result head (twist/partialResults.ts) on lines cut after each digit of their
 * result, labelled by outcomes as the line verifier's lines are (lineLabels.ts), never by arithmetic:
 * - the expressions' results are what right samples wrote (mineLineLabels: one expression, one value);
 * - a line cut after k digits of its result c, read with c's own length, is right when those digits
 *   stand where the mined result has them: the same length, the same leading k digits. So every cut of
 *   a right line is right, and a wrong line's cuts are right up to the digit where it slipped;
 * - contrasts (optional), from the same one assumption: at each cut of a mined result, another digit in
 *   place of its k-th is wrong, and its leading digits read under another length are wrong. The model's
 *   own slips are few and mostly in the low columns; the contrasts show every column every digit.
 */
import { LoadedModel } from "../lm/model/loadModel";
import { MathProblem } from "../math/dataset";
import { Adam } from "../twist/adam";
import { ArithmeticLine, expressionKey } from "../twist/arithmeticLines";
import { logSigmoid } from "../twist/heads";
import { encodePartial, PartialResult, PartialResultHead } from "../twist/partialResults";
import { ResultLengthTable } from "../twist/resultLengths";
import { Rng } from "../util/rng";
import { LabelledLine, mineLineLabels } from "./lineLabels";
import { plainSamplesFor } from "./resultLengths";

export interface CutLine extends PartialResult {
  label: 0 | 1;
  /** The example's weight in the loss. */
  weight: number;
}

export interface CutOptions {
  /** Total weight of one cut's contrasts (spread over them); 0: none. */
  contrastWeight: number;
}

/** One problem's samples cut into partial results with outcome labels. */
export function mineCutLines(texts: readonly string[], correct: readonly boolean[], o: CutOptions): CutLine[] {
  const labelled = mineLineLabels(texts, correct);
  const mined = minedResults(labelled);
  const out: CutLine[] = [];
  for (const { line, label } of labelled) {
    const right = label ? line.c : mined.get(expressionKey(line))?.right;
    for (let k = 1; k <= line.c.length; k++) {
      const c = line.c.slice(0, k);
      const agrees = !!right && right.length === line.c.length && right.startsWith(c);
      out.push({ line: { ...line, c }, length: line.c.length, label: label || agrees ? 1 : 0, weight: 1 });
    }
  }
  if (o.contrastWeight > 0) for (const { line, right } of mined.values()) out.push(...contrasts(line, right, o.contrastWeight));
  return out;
}

/**
 * The result right samples wrote for each expression (a disagreement says nothing, and the expression
 * is left out), with the first right line that wrote it.
 */
export function minedResults(labelled: readonly LabelledLine[]): Map<string, { line: ArithmeticLine; right: string }> {
  const seen = new Map<string, { line: ArithmeticLine; right: string } | null>();
  for (const { line, label } of labelled) {
    if (!label) continue;
    const k = expressionKey(line);
    const before = seen.get(k);
    if (before === undefined) seen.set(k, { line, right: line.c });
    else if (before && before.right !== line.c) seen.set(k, null);
  }
  return new Map([...seen].flatMap(([k, v]) => (v ? [[k, v] as const] : [])));
}

/** Every cut of a mined result `right`: other k-th digits, and its leading digits under other lengths. */
function contrasts(line: ArithmeticLine, right: string, weight: number): CutLine[] {
  const wrong: PartialResult[] = [];
  for (let k = 1; k <= right.length; k++) {
    for (let d = 0; d < 10; d++)
      if (String(d) !== right[k - 1]) wrong.push({ line: { ...line, c: right.slice(0, k - 1) + d }, length: right.length });
    for (let length = k; length <= k + 3; length++)
      if (length !== right.length) wrong.push({ line: { ...line, c: right.slice(0, k) }, length });
  }
  return wrong.map((p) => ({ ...p, label: 0, weight: weight / 12 }));
}

export interface CollectCutOptions extends CutOptions {
  /** Plain samples per problem (T = 1). */
  samples: number;
  maxTokens: number;
  seed: number;
  onProblem?: (done: number, total: number) => void;
  /** Each problem's samples and outcomes, for other uses of the same pass (lineContrasts.ts). */
  onSamples?: (texts: readonly string[], correct: readonly boolean[]) => void;
}

/**
 * The model's own plain samples of training problems, cut into labelled partial results, and the
 * lengths of the right lines' results (the digit twist's length model, as learnResultLengths counts
 * them): everything the digit twist learns, from one pass of sampling.
 */
export async function collectCutLines(
  model: LoadedModel,
  problems: readonly MathProblem[],
  o: CollectCutOptions,
): Promise<{ cuts: CutLine[]; lengths: ResultLengthTable }> {
  const cuts: CutLine[] = [];
  const lengths = new ResultLengthTable();
  for (const [i, problem] of problems.entries()) {
    const plain = await plainSamplesFor(model, problem, i, o, "partial");
    for (const { line, label } of mineLineLabels(plain.texts, plain.correct)) if (label) lengths.add(line);
    cuts.push(...mineCutLines(plain.texts, plain.correct, o));
    o.onSamples?.(plain.texts, plain.correct);
    o.onProblem?.(i + 1, problems.length);
  }
  return { cuts, lengths };
}

export interface PartialTrainOptions {
  epochs: number;
  batch: number;
  learningRate: number;
  seed: number;
  onEpoch?: (epoch: number, loss: number) => void;
}

/** Binary cross-entropy on the cut lines, by Adam over shuffled minibatches (deterministic given the seed). */
export function trainPartialHead(head: PartialResultHead, cuts: readonly CutLine[], o: PartialTrainOptions): { loss: number } {
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
  for (let epoch = 0; epoch < o.epochs; epoch++) {
    for (let i = order.length - 1; i > 0; i--) {
      const j = rng.int(0, i);
      [order[i], order[j]] = [order[j], order[i]];
    }
    loss = 0;
    let total = 0;
    for (let start = 0; start < order.length; start += o.batch) {
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
  return { loss };
}
