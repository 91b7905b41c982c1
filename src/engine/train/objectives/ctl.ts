/**
 * CTL, contrastive twist learning (Zhao et al. 2024, Eq. 8–9), at token or step level: minimise
 * Σ_t KL(σ_t ‖ π_t^ψ), whose gradient is
 *     Σ_t E_{π_t^ψ}[∇ log ψ_t(s_1:t)] − E_{σ}[∇ log ψ_t(s_1:t)].
 * The positive expectation uses exact σ samples (the plain samples that reach the known answer, by
 * rejection; the reference solution when none does), read back by teacher forcing; the negative one the
 * particles of twisted SMC under the current twist. At token level the expectation over the last token
 * is exact, Σ_s q_t(s | s_<t)·∇ log ψ_t(s_<t, s), weighted by the particle's normalised weight after
 * step t. At step level the particles at each line boundary are used directly.
 */
import { LoadedModel } from "../../lm/model/loadModel";
import { MathProblem } from "../../math/dataset";
import { CONFIDENCE_FEATURES } from "../../smc/twist";
import { TokenHeadGradient, ValueHeadGradient } from "../../twist/gradients";
import { logSigmoid, TokenTwistHead, ValueTwistHead } from "../../twist/heads";
import { Rng } from "../../util/rng";
import {
  HiddenRows,
  PlainSamples,
  plainSamples,
  ProblemData,
  ProblemStats,
  RowBuffer,
  SmcNegatives,
  smcNegatives,
  teacherForce,
  TokenNegatives,
  WeightedRows,
} from "../samples";
import { average, ObjectiveResult, TwistObjective } from "./objective";

export interface TokenPositives extends HiddenRows {
  /** n: the token the positive sample took at that row. */
  tokens: Int32Array;
  /** n: 1 / number of positive samples. */
  coeff: Float64Array;
}

/** Token level: every row of the positives and of the SMC proposals. */
export type CtlTokenData = ProblemData<{ level: "token"; positives: TokenPositives; negatives: TokenNegatives }>;
/** Step level: the line-boundary rows of the positives and of the SMC particles, with their confidence. */
export type CtlStepData = ProblemData<{ level: "step"; positives: WeightedRows; negatives: WeightedRows }>;
export type CtlData = CtlTokenData | CtlStepData;

export const ctl: TwistObjective<TokenTwistHead | ValueTwistHead, CtlData> = {
  name: "ctl",
  description: "contrastive twist learning (Zhao et al. 2024)",
  levels: ["token", "step"],
  learningRate: 0.01,
  initHead: (o) =>
    o.level === "token"
      ? TokenTwistHead.init(o.hiddenSize, o.vocabSize, Math.min(o.rank, o.hiddenSize), new Rng(`head:${o.seed}`))
      : ValueTwistHead.init(o.hiddenSize),
  async collect(model, problem, o) {
    const plain = await plainSamples(model, problem, o);
    if (o.level === "token") {
      const positives = await tokenPositives(model, problem, plain);
      const negatives = await smcNegatives(model, problem, plain, { ...o, level: "token" });
      return { level: "token", positives, negatives: negatives.rows, stats: statsOf(plain, negatives) };
    }
    const positives = await stepPositives(model, problem, plain);
    const negatives = await smcNegatives(model, problem, plain, { ...o, level: "step" });
    return { level: "step", positives, negatives: negatives.rows, stats: statsOf(plain, negatives) };
  },
  gradient(head, data) {
    if (head instanceof TokenTwistHead)
      return ctlTokenGradient(
        head,
        data.map((d) => (d.level === "token" ? d : levelMismatch(d.level))),
      );
    return ctlStepGradient(
      head,
      data.map((d) => (d.level === "step" ? d : levelMismatch(d.level))),
    );
  },
};

const levelMismatch = (level: string): never => {
  throw new Error(`CTL: ${level}-level data for a head of the other level`);
};

/** Plain sampling's accuracy; the reward, ESS and Ẑ of the SMC sweep. */
const statsOf = (plain: PlainSamples, smc: SmcNegatives<unknown>): ProblemStats => ({
  reward: smc.reward,
  sampleAccuracy: plain.accuracy,
  exactPositives: plain.exactPositives,
  ess: smc.ess,
  logZ: smc.logZ,
});

interface Positive {
  hidden: Float32Array;
  /** (row, token): the row whose logits predict each token of the sample. */
  tokens: [number, number][];
  /** The row after each line end, with the confidence features so far. */
  lineEnds: { row: number; conf: Float32Array }[];
  /** 1 / number of positives. */
  coeff: number;
}

/** Teacher-forces each positive sample and hands its rows to `take`, in order. */
async function readPositives(model: LoadedModel, problem: MathProblem, plain: PlainSamples, take: (p: Positive) => void): Promise<void> {
  let positives = plain.tokens.filter((_, i) => plain.correct[i]);
  if (!positives.length && problem.solution) positives = [model.tokenizer.encode(problem.solution)];
  for (const seq of positives) {
    const tokens: [number, number][] = [];
    const lineEnds: { row: number; conf: Float32Array }[] = [];
    const { hidden } = await teacherForce(
      model,
      plain.prompt,
      seq,
      (row, tok) => tokens.push([row, tok]),
      (row, j, conf) => {
        if (model.tokenizer.isLineEnd(seq[j])) lineEnds.push({ row, conf: conf.slice() });
      },
    );
    take({ hidden, tokens, lineEnds, coeff: 1 / positives.length });
  }
}

async function tokenPositives(model: LoadedModel, problem: MathProblem, plain: PlainSamples): Promise<TokenPositives> {
  const H = model.lm.hiddenSize;
  const buf = new RowBuffer(H, 2);
  const zeros = new Float32Array(CONFIDENCE_FEATURES);
  await readPositives(model, problem, plain, (p) => {
    for (const [row, tok] of p.tokens) buf.push(p.hidden, row * H, zeros, 0, tok, p.coeff);
  });
  const r = buf.rows();
  return { n: r.n, hidden: r.hidden, confidence: r.confidence, tokens: Int32Array.from(r.extra[0]), coeff: Float64Array.from(r.extra[1]) };
}

async function stepPositives(model: LoadedModel, problem: MathProblem, plain: PlainSamples): Promise<WeightedRows> {
  const H = model.lm.hiddenSize;
  const buf = new RowBuffer(H, 1);
  await readPositives(model, problem, plain, (p) => {
    for (const { row, conf } of p.lineEnds) buf.push(p.hidden, row * H, conf, 0, p.coeff);
  });
  return buf.weighted();
}

export function ctlTokenGradient(head: TokenTwistHead, data: readonly CtlTokenData[]): ObjectiveResult {
  const grad = new TokenHeadGradient(head);
  const V = head.p.vocabSize,
    H = head.p.hiddenSize;
  let loss = 0;
  for (const d of data) {
    const neg = d.negatives,
      pos = d.positives;
    if (neg.n) {
      const psi = head.logPsiNext({ hidden: neg.hidden, hiddenSize: H, prefixes: Array.from({ length: neg.n }, () => []) });
      const E = neg.eosTokens.length;
      for (let r = 0; r < neg.n; r++) {
        const lq = new Float64Array(V);
        for (let s = 0; s < V; s++) lq[s] = neg.logProbs[r * V + s] + psi[r * V + s];
        neg.eosTokens.forEach((e, j) => (lq[e] = neg.logProbs[r * V + e] + neg.eosLogPsi[r * E + j]));
        let max = -Infinity;
        for (let s = 0; s < V; s++) if (lq[s] > max) max = lq[s];
        let sum = 0;
        for (let s = 0; s < V; s++) sum += lq[s] = Math.exp(lq[s] - max);
        const g = new Float64Array(V);
        for (let s = 0; s < V; s++) {
          g[s] = (neg.weights[r] * lq[s]) / sum;
          if (g[s] !== 0 && Number.isFinite(psi[r * V + s])) loss += g[s] * psi[r * V + s];
        }
        for (const e of neg.eosTokens) g[e] = 0; // φ, not the twist, stands there
        grad.add(neg.hidden, r * H, g);
      }
    }
    if (pos.n) {
      const psi = head.logPsiNext({ hidden: pos.hidden, hiddenSize: H, prefixes: Array.from({ length: pos.n }, () => []) });
      for (let r = 0; r < pos.n; r++) {
        grad.add(pos.hidden, r * H, -pos.coeff[r], pos.tokens[r]);
        loss -= pos.coeff[r] * psi[r * V + pos.tokens[r]];
      }
    }
  }
  return average(grad.grads, loss, data.length);
}

export function ctlStepGradient(head: ValueTwistHead, data: readonly CtlStepData[]): ObjectiveResult {
  const grad = new ValueHeadGradient(head);
  let loss = 0;
  for (const d of data) {
    for (const [rows, sign] of [
      [d.negatives, 1],
      [d.positives, -1],
    ] as const) {
      for (let r = 0; r < rows.n; r++) {
        const c = sign * rows.coeff[r];
        grad.addLogPsi(rows.hidden, rows.confidence, r, c);
        loss += c * logSigmoid(grad.logit(rows.hidden, rows.confidence, r));
      }
    }
  }
  return average(grad.grads, loss, data.length);
}
