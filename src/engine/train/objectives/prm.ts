/**
 * PRM, the line verifier (a process reward model), at step level: σ(ℓ) of every arithmetic line of the
 * plain samples whose label follows from the outcomes (lineLabels.ts) predicts that label, by binary
 * cross-entropy. It reads only the text, so it needs no teacher forcing and no SMC sweep.
 *
 * With `--twist token` it trains the same verifier: the token level reads it digit by digit
 * (twist/digitTwist.ts: a result being written is worth its best completion), so one file tells the
 * token-level and the step-level story alike.
 */
import { logSigmoid } from "../../twist/heads";
import { LineVerifier } from "../../twist/lineVerifier";
import { Rng } from "../../util/rng";
import { LabelledLine, mineLineLabels } from "../lineLabels";
import { plainSamples, ProblemData } from "../samples";
import { average, ObjectiveResult, TwistObjective } from "./objective";

/** Digit columns the line verifier reads: numbers up to 9,999 (a line with a longer one is not read). */
export const VERIFIER_COLUMNS = 4;

/** The lines of the plain samples whose labels follow from the outcomes. */
export type PrmData = ProblemData<{ lines: LabelledLine[] }>;

export const prm: TwistObjective<LineVerifier, PrmData> = {
  name: "prm",
  description: "line verifier (process reward model), binary cross-entropy on line labels mined from outcomes",
  levels: ["step", "token"],
  learningRate: 0.01,
  initHead: (o) => LineVerifier.init(VERIFIER_COLUMNS, new Rng(`head:${o.seed}`)),
  async collect(model, problem, o) {
    const plain = await plainSamples(model, problem, o);
    // The statistics are plain sampling's (ψ ≡ 1: ESS = 1, Ẑ = mean reward).
    return {
      lines: mineLineLabels(plain.texts, plain.correct),
      stats: {
        reward: plain.accuracy,
        sampleAccuracy: plain.accuracy,
        exactPositives: plain.exactPositives,
        ess: 1,
        logZ: Math.log(plain.accuracy),
      },
    };
  },
  gradient: prmGradient,
};

export function prmGradient(verifier: LineVerifier, data: readonly PrmData[]): ObjectiveResult {
  const grads = verifier.parameters().map((p) => new Float64Array(p.length));
  let loss = 0;
  let n = 0;
  for (const d of data) {
    for (const { line, label } of d.lines) {
      // A line with a number longer than the columns is left out, as the verifier leaves it out when it
      // scores: cut to its low digits it would be another line, under this line's label.
      const enc = verifier.encodeLine(line);
      if (!enc) continue;
      const z = verifier.lineLogit(enc);
      loss -= label * logSigmoid(z) + (1 - label) * logSigmoid(-z);
      verifier.addGradient(grads, enc, Math.exp(logSigmoid(z)) - label);
      n++;
    }
  }
  return average(grads, loss, Math.max(n, 1));
}
