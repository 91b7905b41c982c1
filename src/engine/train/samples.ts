/**
 * What twist learning sees of one problem, gathered once per visit and reused for every update:
 * - positive samples from the target σ ∝ p·1[correct] (exact, by rejection from p; the reference
 *   solution when no sample is correct), read back by teacher forcing;
 * - negative samples from twisted SMC under the current twist with the known answer as the final
 *   potential: every proposing row's hidden state, next-token log-probabilities and normalised weight
 *   after its step (Zhao et al. 2024, Sec. 4.1: no gradient flows through the weights);
 * - at step level, the line-boundary rows of both, with their confidence features, and for the
 *   value-regression (BCE) objective, every boundary of every plain sample with its 0/1 label.
 */
import { LoadedModel } from "../lm/model/loadModel";
import { decodeLogWeight } from "../../protocol/record";
import { encodeWithinContext } from "../lm/model/contextWindow";
import { generate } from "../lm/generate";
import { reward } from "../math/answer";
import { MathProblem } from "../math/dataset";
import { CONFIDENCE_FEATURES, ConfidenceTracker, Twist } from "../smc/twist";
import { runTwistedSmc, SmcLevel } from "../smc/twistedSmc";
import { normalize } from "../smc/weights";
import { LabelledLine, mineLineLabels } from "./lineLabels";

/** Rows of hidden states with per-row data; `n` rows of `hiddenSize`. */
export interface HiddenRows {
  n: number;
  hidden: Float32Array;
  confidence: Float32Array;
}

export interface TokenNegatives extends HiddenRows {
  /** n × vocab: log p(s | prefix) of the base model. */
  logProbs: Float32Array;
  /** The EOS tokens and, n × eosTokens, the log ψ used for them (φ: not a twist parameter). */
  eosTokens: readonly number[];
  eosLogPsi: Float32Array;
  /** n: normalised SMC weight of the row after its step's reweighting. */
  weights: Float64Array;
}

export interface TokenPositives extends HiddenRows {
  /** n: the token the positive sample took at that row. */
  tokens: Int32Array;
  /** n: 1 / number of positive samples. */
  coeff: Float64Array;
}

export interface WeightedRows extends HiddenRows {
  /** n: the row's coefficient (normalised SMC weight, 1/#positives, or a 0/1 label). */
  coeff: Float64Array;
}

export interface ProblemData {
  level: SmcLevel;
  tokenNegatives?: TokenNegatives;
  tokenPositives?: TokenPositives;
  stepNegatives?: WeightedRows;
  stepPositives?: WeightedRows;
  /** Value regression: every boundary (and the final position) of every plain sample, coeff = label. */
  labelled?: WeightedRows;
  /** Line verifier: the lines of the plain samples whose labels follow from the outcomes. */
  lines?: LabelledLine[];
  stats: { reward: number; sampleAccuracy: number; exactPositives: number; ess: number; logZ: number };
}

/**
 * ctl: contrastive twist learning (token or step); bce: value regression of the hidden-state value head
 * (step); prm: the line verifier on outcome-mined line labels (step).
 */
export type TwistLoss = "ctl" | "bce" | "prm";

export interface CollectOptions {
  level: SmcLevel;
  loss: TwistLoss;
  samples: number;
  maxTokens: number;
  seed: number;
  twist: Twist;
  /**
   * φ of a wrong final answer during training (φ = 1 when right). A hard 0 lets no wrong particle end:
   * the twisted proposal then avoids EOS and writes on until the length limit, and those runs dominate
   * the negative samples. A small floor keeps the target σ ∝ p·φ close to p·1[correct] without that.
   */
  rewardFloor: number;
}

class RowBuffer {
  private hidden: number[] = [];
  private conf: number[] = [];
  private extra: number[][] = [];
  n = 0;
  constructor(private readonly hiddenSize: number, extras: number) {
    this.extra = Array.from({ length: extras }, () => []);
  }
  push(hidden: ArrayLike<number>, hOffset: number, conf: ArrayLike<number>, cOffset: number, ...values: number[]): void {
    for (let i = 0; i < this.hiddenSize; i++) this.hidden.push(hidden[hOffset + i]);
    for (let j = 0; j < CONFIDENCE_FEATURES; j++) this.conf.push(conf[cOffset + j]);
    values.forEach((v, k) => this.extra[k].push(v));
    this.n++;
  }
  rows(): HiddenRows & { extra: number[][] } {
    return { n: this.n, hidden: Float32Array.from(this.hidden), confidence: Float32Array.from(this.conf), extra: this.extra };
  }
}

/** Whether a text's final answer is the gold one (the reward, as a boolean). */
const isCorrect = (text: string, gold: number) => reward(text, gold) === 1;

/**
 * Teacher-forces prompt + completion and walks the completion: for each generated position j (after
 * consuming token j) calls visit with the hidden row index and the confidence features so far; for
 * each token also reports the row that predicted it (for the token twist).
 */
async function teacherForce(
  model: LoadedModel,
  prompt: number[],
  completion: number[],
  onToken: (predictingRow: number, token: number) => void,
  onPosition: (row: number, j: number, conf: Float32Array) => void,
): Promise<{ hidden: Float32Array; logits: Float32Array }> {
  const { logits, hidden } = await model.lm.encodeAll!([...prompt, ...completion]);
  if (!hidden) throw new Error("twist training needs the model's last_hidden_state");
  const V = model.lm.vocabSize;
  const tracker = new ConfidenceTracker();
  const conf = new Float32Array(CONFIDENCE_FEATURES);
  completion.forEach((tok, j) => {
    const row = prompt.length - 1 + j; // the row whose logits predict completion[j]
    let max = -Infinity;
    for (let s = 0; s < V; s++) max = Math.max(max, logits[row * V + s]);
    tracker.add(max - logits[row * V + tok]);
    onToken(row, tok);
    tracker.write(conf, 0);
    onPosition(row + 1, j, conf);
  });
  return { hidden, logits };
}

export async function collectProblem(model: LoadedModel, problem: MathProblem, o: CollectOptions): Promise<ProblemData> {
  const { tokenizer, lm } = model;
  const H = lm.hiddenSize, V = lm.vocabSize;
  const { prompt, maxTokens } = encodeWithinContext(model, problem.question, o.maxTokens);
  const isEos = (t: number) => tokenizer.isEos(t);

  // Plain samples: exact σ samples by rejection, and the value-regression data.
  const plain = await generate(lm, prompt, { numSamples: o.samples, maxTokens, temperature: 1, seed: o.seed, isEos });
  const plainTexts = plain.sequences.map((s) => tokenizer.decode(s.tokens));
  const plainCorrect = plainTexts.map((t) => isCorrect(t, problem.gold));
  let positives = plain.sequences.filter((_, i) => plainCorrect[i]).map((s) => s.tokens);
  const exactPositives = positives.length;
  if (!positives.length && problem.solution) positives = [tokenizer.encode(problem.solution)];

  const data: ProblemData = {
    level: o.level,
    stats: { reward: 0, sampleAccuracy: plainCorrect.filter(Boolean).length / o.samples, exactPositives, ess: 0, logZ: 0 },
  };

  if (o.loss === "prm") {
    // Plain samples are the data; their statistics are plain sampling's (ψ ≡ 1: ESS = 1, Ẑ = mean reward).
    data.lines = mineLineLabels(plainTexts, plainCorrect);
    data.stats.reward = data.stats.sampleAccuracy;
    data.stats.ess = 1;
    data.stats.logZ = Math.log(data.stats.sampleAccuracy);
    return data;
  }

  if (o.loss === "bce") {
    const buf = new RowBuffer(H, 1);
    for (const [i, seq] of plain.sequences.entries()) {
      const label = plainCorrect[i] ? 1 : 0;
      let last = { row: -1, conf: new Float32Array(CONFIDENCE_FEATURES) };
      const positions: { row: number; conf: Float32Array }[] = [];
      const { hidden } = await teacherForce(model, prompt, seq.tokens, () => undefined, (row, j, conf) => {
        last = { row, conf: conf.slice() };
        if (tokenizer.isLineEnd(seq.tokens[j])) positions.push(last);
      });
      if (last.row >= 0 && !positions.includes(last)) positions.push(last);
      for (const p of positions) buf.push(hidden, p.row * H, p.conf, 0, label);
    }
    const r = buf.rows();
    data.labelled = { ...r, coeff: Float64Array.from(r.extra[0]) };
    data.stats.reward = data.stats.sampleAccuracy;
    return data;
  }

  // Positives, read back by teacher forcing.
  const posToken = new RowBuffer(H, 2);
  const posStep = new RowBuffer(H, 1);
  for (const seq of positives) {
    const c = 1 / positives.length;
    const tokenRows: [number, number][] = [];
    const stepRows: { row: number; conf: Float32Array }[] = [];
    const { hidden } = await teacherForce(model, prompt, seq, (row, tok) => tokenRows.push([row, tok]), (row, j, conf) => {
      if (tokenizer.isLineEnd(seq[j])) stepRows.push({ row, conf: conf.slice() });
    });
    const zeros = new Float32Array(CONFIDENCE_FEATURES);
    for (const [row, tok] of tokenRows) posToken.push(hidden, row * H, zeros, 0, tok, c);
    for (const { row, conf } of stepRows) posStep.push(hidden, row * H, conf, 0, c);
  }

  // Negatives: twisted SMC with the known answer as final potential.
  const negToken = new RowBuffer(H, 1);
  const negStep = new RowBuffer(H, 1);
  const logProbs: number[] = [];
  const eosLogPsi: number[] = [];
  let eosTokens: readonly number[] = [];
  // Rows proposed (token level) or at a boundary (step level) during the current step; their weights
  // are known once the step ends. At step level, boundaries arrive over several forward passes.
  let pending: { particle: number; hidden: Float32Array; hOffset: number; confidence?: Float32Array; logp?: Float32Array; eos?: Float32Array; row: number }[] = [];
  const smc = await runTwistedSmc(lm, prompt, {
    particles: o.samples,
    level: o.level,
    resampling: "systematic",
    essThreshold: 0.5,
    resample: "adaptive",
    maxTokens,
    temperature: 1,
    seed: o.seed + 1,
    twist: o.twist,
    logFinalPotential: (text) => (isCorrect(text, problem.gold) ? 0 : Math.log(o.rewardFloor)),
    text: tokenizer,
    onProposal: o.level !== "token" ? undefined : (info) => {
      eosTokens = info.eosTokens;
      if (!info.hidden) return;
      info.particles.forEach((particle, row) => pending.push({ particle, hidden: info.hidden!, hOffset: row * H, logp: info.logProbs, eos: info.eosLogPsi, row }));
    },
    onBoundary: o.level !== "step" ? undefined : (info) => {
      if (!info.hidden) return;
      info.particles.forEach((particle, row) => pending.push({ particle, hidden: info.hidden!, hOffset: row * H, confidence: info.confidence, row }));
    },
    onStep: (record) => {
      const w = normalize(record.particles.map((p) => decodeLogWeight(p.logWeight)));
      const zeros = new Float32Array(CONFIDENCE_FEATURES);
      for (const r of pending) {
        if (w[r.particle] === 0) continue;
        if (o.level === "token") {
          negToken.push(r.hidden, r.hOffset, zeros, 0, w[r.particle]);
          for (let s = 0; s < V; s++) logProbs.push(r.logp![r.row * V + s]);
          for (let j = 0; j < eosTokens.length; j++) eosLogPsi.push(r.eos![r.row * eosTokens.length + j]);
        } else {
          negStep.push(r.hidden, r.hOffset, r.confidence!, r.row * CONFIDENCE_FEATURES, w[r.particle]);
        }
      }
      pending = [];
    },
  });
  const texts = smc.particles.map((p) => tokenizer.decode(p.tokens));
  data.stats.reward = texts.filter((t) => isCorrect(t, problem.gold)).length / texts.length;
  data.stats.ess = smc.ess.length ? smc.ess.reduce((a, b) => a + b, 0) / smc.ess.length / o.samples : 1;
  data.stats.logZ = smc.logZ;

  if (o.level === "token") {
    const n = negToken.rows();
    data.tokenNegatives = { ...n, logProbs: Float32Array.from(logProbs), eosTokens, eosLogPsi: Float32Array.from(eosLogPsi), weights: Float64Array.from(n.extra[0]) };
    const p = posToken.rows();
    data.tokenPositives = { ...p, tokens: Int32Array.from(p.extra[0]), coeff: Float64Array.from(p.extra[1]) };
  } else {
    const n = negStep.rows();
    data.stepNegatives = { ...n, coeff: Float64Array.from(n.extra[0]) };
    const p = posStep.rows();
    data.stepPositives = { ...p, coeff: Float64Array.from(p.extra[0]) };
  }
  return data;
}
