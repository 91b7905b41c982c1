/**
 * BCE, value regression on rollouts (FUDGE-style, Yang & Klein 2021), at step level: σ(z) of the value
 * head at every line boundary (and the last position) of a plain sample predicts whether that sample
 * ends correct, by binary cross-entropy.
 */
import { CONFIDENCE_FEATURES } from "../../smc/twist";
import { ValueHeadGradient } from "../../twist/gradients";
import { logSigmoid, ValueTwistHead } from "../../twist/heads";
import { plainSamples, ProblemData, RowBuffer, teacherForce, WeightedRows } from "../samples";
import { average, ObjectiveResult, TwistObjective } from "./objective";

/** Every line boundary (and the final position) of every plain sample, coeff = the sample's 0/1 label. */
export type BceData = ProblemData<{ labelled: WeightedRows }>;

export const bce: TwistObjective<ValueTwistHead, BceData> = {
  name: "bce",
  description: "value regression, binary cross-entropy (FUDGE-style)",
  levels: ["step"],
  learningRate: 0.05,
  initHead: (o) => ValueTwistHead.init(o.hiddenSize),
  async collect(model, problem, o) {
    const H = model.lm.hiddenSize;
    const plain = await plainSamples(model, problem, o);
    const buf = new RowBuffer(H, 1);
    for (const [i, seq] of plain.tokens.entries()) {
      const label = plain.correct[i] ? 1 : 0;
      let last = { row: -1, conf: new Float32Array(CONFIDENCE_FEATURES) };
      const positions: { row: number; conf: Float32Array }[] = [];
      const { hidden } = await teacherForce(
        model,
        plain.prompt,
        seq,
        () => undefined,
        (row, j, conf) => {
          last = { row, conf: conf.slice() };
          if (model.tokenizer.isLineEnd(seq[j])) positions.push(last);
        },
      );
      if (last.row >= 0 && !positions.includes(last)) positions.push(last);
      for (const p of positions) buf.push(hidden, p.row * H, p.conf, 0, label);
    }
    // No SMC sweep: the reward is plain sampling's; ESS and Ẑ are reported as 0.
    return {
      labelled: buf.weighted(),
      stats: { reward: plain.accuracy, sampleAccuracy: plain.accuracy, exactPositives: plain.exactPositives, ess: 0, logZ: 0 },
    };
  },
  gradient: bceStepGradient,
};

export function bceStepGradient(head: ValueTwistHead, data: readonly BceData[]): ObjectiveResult {
  const grad = new ValueHeadGradient(head);
  let loss = 0;
  let n = 0;
  for (const d of data) {
    const rows = d.labelled;
    for (let r = 0; r < rows.n; r++) {
      const z = grad.logit(rows.hidden, rows.confidence, r);
      const y = rows.coeff[r];
      // −[y log σ(z) + (1 − y) log σ(−z)], with ∂/∂z = σ(z) − y.
      loss -= y * logSigmoid(z) + (1 - y) * logSigmoid(-z);
      grad.addLogit(rows.hidden, rows.confidence, r, Math.exp(logSigmoid(z)) - y);
      n++;
    }
  }
  return average(grad.grads, loss, Math.max(n, 1));
}
