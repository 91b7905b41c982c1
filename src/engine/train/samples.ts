/**
 * What every twist objective draws its data from (each objective, in objectives/, picks what it needs):
 * - plain samples from the base model p, each with whether it reached the known answer: exact samples
 *   of the target σ ∝ p·1[correct] by rejection, and outcome labels;
 * - teacher forcing: a sample read back through the model, row by row, with its hidden states and
 *   confidence features;
 * - negative samples from twisted SMC under the current twist with the known answer as the final
 *   potential: every proposing row's hidden state, next-token log-probabilities and normalised weight
 *   after its step (token level), or every line boundary's hidden state and confidence (step level)
 *   (Zhao et al. 2024, Sec. 4.1: no gradient flows through the weights);
 * - row buffers that gather such rows into flat arrays.
 */
import { LoadedModel } from "../lm/model/loadModel";
import { decodeLogWeight } from "../../protocol/record";
import { encodeWithinContext } from "../lm/model/contextWindow";
import { generate } from "../lm/generate";
import { reward } from "../math/answer";
import { MathProblem } from "../math/dataset";
import { CONFIDENCE_FEATURES, ConfidenceTracker, StepTwist, Twist } from "../smc/twist";
import { runTwistedSmc, SmcLevel } from "../smc/twistedSmc";
import { normalize } from "../smc/weights";
import { hashString64 } from "../util/rng";

/** Rows of hidden states with per-row data; `n` rows of `hiddenSize`. */
export interface HiddenRows {
  n: number;
  hidden: Float32Array;
  confidence: Float32Array;
}

export interface WeightedRows extends HiddenRows {
  /** n: the row's coefficient (normalised SMC weight, 1/#positives, or a 0/1 label). */
  coeff: Float64Array;
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

/** One problem's numbers as the trainer logs them (means over a batch). */
export interface ProblemStats {
  /** Fraction of the final samples (SMC particles, or plain samples) that reach the known answer. */
  reward: number;
  /** Fraction of the plain samples that reach it. */
  sampleAccuracy: number;
  /** How many plain samples reach it: exact σ samples. */
  exactPositives: number;
  /** Mean ESS of the SMC sweep over its steps, as a fraction of the particles. */
  ess: number;
  /** log Ẑ of the SMC sweep. */
  logZ: number;
}

/**
 * One problem's data for an objective: the rows it gathered (`Rows`, declared in the objective's file)
 * and the statistics every objective reports.
 */
export type ProblemData<Rows extends object = object> = Rows & { stats: ProblemStats };

/** One problem's plain samples as replay keeps them: their texts and whether each answer is right. */
export interface SampleOutcomes {
  texts: string[];
  correct: boolean[];
}

export interface CollectOptions {
  level: SmcLevel;
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
  /** prm: the total weight of each mined result's contrasts (train/lineContrasts.ts); 0: none. */
  contrastWeight?: number;
}

/** Gathers rows of hidden states, confidence features and `extras` numbers each. */
export class RowBuffer {
  private hidden: number[] = [];
  private conf: number[] = [];
  private extra: number[][] = [];
  n = 0;
  constructor(
    private readonly hiddenSize: number,
    extras: number,
  ) {
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
  /** The rows with their first extra as the coefficient. */
  weighted(): WeightedRows {
    const r = this.rows();
    return { n: r.n, hidden: r.hidden, confidence: r.confidence, coeff: Float64Array.from(r.extra[0]) };
  }
}

/** Whether a text's final answer is the gold one (the reward, as a boolean). */
export const isCorrect = (text: string, gold: number) => reward(text, gold) === 1;

/**
 * Teacher-forces prompt + completion and walks the completion: for each generated position j (after
 * consuming token j) calls visit with the hidden row index and the confidence features so far; for
 * each token also reports the row that predicted it (for the token twist).
 */
export async function teacherForce(
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

/** A problem's plain samples (temperature 1, seeded by `seed`) and their outcomes. */
export interface PlainSamples {
  /** The prompt and the token budget left to a sample within the model's context. */
  prompt: number[];
  maxTokens: number;
  tokens: number[][];
  texts: string[];
  correct: boolean[];
  /** Correct samples / `samples` asked for. */
  accuracy: number;
  /** How many are correct. */
  exactPositives: number;
}

/** Draws the plain samples every objective starts from. */
export async function plainSamples(model: LoadedModel, problem: MathProblem, o: CollectOptions): Promise<PlainSamples> {
  const { tokenizer, lm } = model;
  const { prompt, maxTokens } = encodeWithinContext(model, problem.question, o.maxTokens);
  const plain = await generate(lm, prompt, {
    numSamples: o.samples,
    maxTokens,
    temperature: 1,
    seed: o.seed,
    isEos: (t: number) => tokenizer.isEos(t),
  });
  const tokens = plain.sequences.map((s) => s.tokens);
  const texts = tokens.map((t) => tokenizer.decode(t));
  const correct = texts.map((t) => isCorrect(t, problem.gold));
  const exactPositives = correct.filter(Boolean).length;
  return { prompt, maxTokens, tokens, texts, correct, accuracy: exactPositives / o.samples, exactPositives };
}

/** Plain samples are drawn without a twist; the options name one all the same. */
const NO_TWIST: StepTwist = { kind: "step", textOnly: true, logValue: (input) => new Float64Array(input.prefixes.length) };

/**
 * The model's plain samples of the `i`-th problem (temperature 1, step level, no twist) and whether
 * each is right: what the digit twist's head and lengths are fitted on (partialResults.ts). `purpose`
 * keeps the seeds of different minings apart.
 */
export function plainSamplesFor(
  model: LoadedModel,
  problem: MathProblem,
  i: number,
  o: { samples: number; maxTokens: number; seed: number },
  purpose: string,
): Promise<PlainSamples> {
  const seed = Number(hashString64(`${purpose}:${o.seed}:${i}`) % 2147483647n);
  return plainSamples(model, problem, { level: "step", samples: o.samples, maxTokens: o.maxTokens, seed, rewardFloor: 0, twist: NO_TWIST });
}

/** What a twisted SMC sweep leaves: the rows of the level's negatives, and the sweep's statistics. */
export interface SmcNegatives<Rows> {
  rows: Rows;
  /** Fraction of the final particles that reach the known answer. */
  reward: number;
  ess: number;
  logZ: number;
}

/**
 * Runs twisted SMC under `o.twist` with the known answer as final potential (seeded by `seed + 1`) and
 * keeps its rows as negative samples: at token level every proposing row, at step level every line
 * boundary, each weighted by its particle's normalised weight after the step.
 */
export async function smcNegatives(
  model: LoadedModel,
  problem: MathProblem,
  plain: PlainSamples,
  o: CollectOptions & { level: "token" },
): Promise<SmcNegatives<TokenNegatives>>;
export async function smcNegatives(
  model: LoadedModel,
  problem: MathProblem,
  plain: PlainSamples,
  o: CollectOptions & { level: "step" },
): Promise<SmcNegatives<WeightedRows>>;
export async function smcNegatives(
  model: LoadedModel,
  problem: MathProblem,
  plain: PlainSamples,
  o: CollectOptions,
): Promise<SmcNegatives<TokenNegatives | WeightedRows>> {
  const { tokenizer, lm } = model;
  const H = lm.hiddenSize,
    V = lm.vocabSize;
  const negToken = new RowBuffer(H, 1);
  const negStep = new RowBuffer(H, 1);
  const logProbs: number[] = [];
  const eosLogPsi: number[] = [];
  let eosTokens: readonly number[] = [];
  // Rows proposed (token level) or at a boundary (step level) during the current step; their weights
  // are known once the step ends. At step level, boundaries arrive over several forward passes.
  let pending: {
    particle: number;
    hidden: Float32Array;
    hOffset: number;
    confidence?: Float32Array;
    logp?: Float32Array;
    eos?: Float32Array;
    row: number;
  }[] = [];
  const smc = await runTwistedSmc(lm, plain.prompt, {
    particles: o.samples,
    level: o.level,
    resampling: "systematic",
    essThreshold: 0.5,
    resample: "adaptive",
    maxTokens: plain.maxTokens,
    temperature: 1,
    seed: o.seed + 1,
    twist: o.twist,
    logFinalPotential: (text) => (isCorrect(text, problem.gold) ? 0 : Math.log(o.rewardFloor)),
    text: tokenizer,
    onProposal:
      o.level !== "token"
        ? undefined
        : (info) => {
            eosTokens = info.eosTokens;
            if (!info.hidden) return;
            info.particles.forEach((particle, row) =>
              pending.push({ particle, hidden: info.hidden!, hOffset: row * H, logp: info.logProbs, eos: info.eosLogPsi, row }),
            );
          },
    onBoundary:
      o.level !== "step"
        ? undefined
        : (info) => {
            if (!info.hidden) return;
            info.particles.forEach((particle, row) =>
              pending.push({ particle, hidden: info.hidden!, hOffset: row * H, confidence: info.confidence, row }),
            );
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
  const stats = {
    reward: texts.filter((t) => isCorrect(t, problem.gold)).length / texts.length,
    ess: smc.ess.length ? smc.ess.reduce((a, b) => a + b, 0) / smc.ess.length / o.samples : 1,
    logZ: smc.logZ,
  };
  if (o.level === "step") return { rows: negStep.weighted(), ...stats };
  const n = negToken.rows();
  return {
    rows: {
      ...n,
      logProbs: Float32Array.from(logProbs),
      eosTokens,
      eosLogPsi: Float32Array.from(eosLogPsi),
      weights: Float64Array.from(n.extra[0]),
    },
    ...stats,
  };
}
